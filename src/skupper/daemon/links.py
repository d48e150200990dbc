"""The daemon's link manager: one dialer per Link, incoming links, and their status.

It owns the Operational condition of Links and the ``network`` part of the Site's
status (which sites this one is linked with, and how).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from skupper import __version__
from skupper.certs.tls import client_context
from skupper.controller.link import LINK_REQUIRED, dial_endpoint
from skupper.daemon.status_writer import StatusWriter
from skupper.grants.redemption import grant_of_unit
from skupper.resources import Resource
from skupper.resources.status import derive_ready, set_condition
from skupper.router.dialer import Dialer, DialTarget, LinkReport
from skupper.router.link import HEARTBEAT_LOST, LinkConnection

log = logging.getLogger(__name__)

# Incoming links whose dialer went silent (the heartbeat gave up: a partition, a host
# gone dark) stay listed as not operational, with the reason, until their dialer is
# back; at most this many. Links closed or reset by their dialer just disappear, as
# before: a reset means the dialer's host answered, and it redials if it can.
MAX_FAILED_INCOMING = 32


class LinkManager:
    def __init__(self, writer: StatusWriter, namespace: str) -> None:
        self._writer = writer
        self._namespace = namespace
        self._site: dict[str, str] = {}
        self._dialers: dict[str, tuple[Dialer, asyncio.Task[None], tuple[Any, ...]]] = {}
        self._outgoing: dict[str, LinkReport] = {}
        self._incoming: dict[LinkConnection, dict[str, Any]] = {}
        self._incoming_serials: dict[LinkConnection, int] = {}
        self._revoked_serials: set[int] = set()
        self._revoked_grants: set[str] = set()
        # Service traffic (daemon.services.ServiceRouter), set by the daemon: told of every
        # link that comes and goes, handed every stream a peer opens.
        self.services: Any = None
        self._costs: dict[str, int] = {}
        self._outgoing_connections: dict[str, LinkConnection] = {}
        self._failed_incoming: dict[str, dict[str, Any]] = {}

    # -- who we are ---------------------------------------------------------------------

    def set_site(self, site: Resource) -> None:
        first = not self._site
        self._site = {"siteId": str(site["metadata"].get("uid", "")),
                      "siteName": str(site["metadata"]["name"])}
        if self.services is not None:
            self.services.set_site(self._site["siteId"], self._site["siteName"])
        if first:
            # Replace whatever network an earlier run of the daemon left in the status.
            self._update_network()

    def local_hello(self) -> dict[str, Any]:
        return dict(self._site)

    # -- outgoing links (LinkRuntime) ----------------------------------------------

    async def ensure_link(self, link: Resource, credentials: dict[str, bytes]) -> None:
        name = str(link["metadata"]["name"])
        endpoint = dial_endpoint(link)
        assert endpoint is not None  # checked by the reconciler
        config = (endpoint["host"], int(endpoint["port"]), credentials["tls.crt"],
                  credentials["tls.key"], credentials["ca.crt"], self._site.get("siteId"),
                  _cost(link))
        current = self._dialers.get(name)
        if current is not None and current[2] == config:
            return
        await self.remove_link(name)
        tls = client_context(credentials["ca.crt"], cert_pem=credentials["tls.crt"],
                             key_pem=credentials["tls.key"])
        self._costs[name] = _cost(link)
        dialer = Dialer(name, DialTarget(endpoint["host"], int(endpoint["port"]), tls),
                        self.local_hello(), self._report,
                        on_stream=self._on_stream, on_connection=self._on_connection)
        task = asyncio.create_task(dialer.run(), name=f"dial-{name}")
        self._dialers[name] = (dialer, task, config)
        self._report(name, LinkReport(False, "Connecting"))

    async def remove_link(self, name: str) -> None:
        entry = self._dialers.pop(name, None)
        if entry is None:
            return
        entry[1].cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await entry[1]
        self._outgoing.pop(name, None)
        self._update_network()

    async def _on_stream(self, stream: Any) -> None:
        if self.services is not None:
            await self.services.on_stream(stream)
        else:
            stream.reset()

    def _on_connection(self, name: str, connection: LinkConnection | None) -> None:
        if self.services is None:
            return
        if connection is not None:
            self._outgoing_connections[name] = connection
            self.services.link_up(connection, outgoing=True, cost=self._costs.get(name, 1))
        elif (old := self._outgoing_connections.pop(name, None)) is not None:
            self.services.link_down(old)

    async def stop(self) -> None:
        for name in list(self._dialers):
            await self.remove_link(name)

    def _report(self, name: str, report: LinkReport) -> None:
        if name not in self._dialers and report.operational:
            return
        self._outgoing[name] = report

        def change(link: Resource) -> None:
            status = link.setdefault("status", {})
            set_condition(link, "Configured", True, "Configured", "OK")
            if report.operational:
                set_condition(link, "Operational", True, "Operational", "OK")
                status["remoteSiteId"] = report.remote.get("siteId", "")
                status["remoteSiteName"] = report.remote.get("siteName", "")
            else:
                pending = report.message == "Connecting"
                set_condition(link, "Operational", False, "Error", report.message,
                              pending=pending)
            derive_ready(link, LINK_REQUIRED)

        self._writer.submit("Link", name, change)
        self._update_network()

    # -- incoming links -------------------------------------------------------------

    def on_incoming(self, connection: LinkConnection, serial: int | None) -> None:
        name = str(connection.remote_hello.get("link", ""))
        if serial is None:
            self._incoming.pop(connection, None)
            self._incoming_serials.pop(connection, None)
            if self.services is not None:
                self.services.link_down(connection)
            self._remember_failed(name, connection)
        else:
            self._failed_incoming.pop(name, None)
            self._incoming[connection] = dict(connection.remote_hello)
            self._incoming_serials[connection] = serial
            if self.services is not None:
                connection.set_stream_handler(self.services.on_stream)
                self.services.link_up(connection, outgoing=False)
        self._update_network()

    def _remember_failed(self, name: str, connection: LinkConnection) -> None:
        """A dialer gone silent is news for the operator at this end too: keep its row."""
        reason = connection.close_reason or ""
        if not name or not reason.startswith(HEARTBEAT_LOST) or any(
            other.remote_hello.get("link") == name for other in self._incoming
        ):
            return
        self._failed_incoming.pop(name, None)
        self._failed_incoming[name] = {**connection.remote_hello, "message": reason}
        while len(self._failed_incoming) > MAX_FAILED_INCOMING:
            self._failed_incoming.pop(next(iter(self._failed_incoming)))

    # -- revocation -------------------------------------------------------------------

    def is_revoked(self, serial: int | None, unit: str | None) -> bool:
        if serial is not None and serial in self._revoked_serials:
            return True
        grant = grant_of_unit(unit)
        return grant is not None and grant in self._revoked_grants

    def set_revoked(self, site: Resource) -> None:
        """Take the site's revocation lists; close links that use a revoked certificate."""
        status = site.get("status") or {}
        self._revoked_serials = {
            int(entry["serial"], 16)
            for entry in status.get("revokedCertificates") or [] if entry.get("serial")
        }
        self._revoked_grants = {
            str(entry["uid"]) for entry in status.get("revokedGrants") or [] if entry.get("uid")
        }
        for connection, serial in list(self._incoming_serials.items()):
            if self.is_revoked(serial, connection.peer_unit):
                log.info("closing link %s from site %s: its certificate %x is revoked",
                         connection.remote_hello.get("link"),
                         connection.remote_hello.get("siteName"), serial)
                connection.revoke()

    # -- the site's view of the network ---------------------------------------------

    def refresh_network(self) -> None:
        self._update_network()

    def _update_network(self) -> None:
        site_name = self._site.get("siteName")
        if not site_name:
            return
        links: list[dict[str, Any]] = []
        remotes: dict[str, str] = {}
        for name, report in sorted(self._outgoing.items()):
            remote_id = str(report.remote.get("siteId", ""))
            links.append({"name": name, "remoteSiteId": remote_id,
                          "remoteSiteName": str(report.remote.get("siteName", "")),
                          "operational": report.operational})
            if report.operational and remote_id:
                remotes[remote_id] = str(report.remote.get("siteName", ""))
        for hello in self._incoming.values():
            remote_id = str(hello.get("siteId", ""))
            links.append({"name": str(hello.get("link", "")), "remoteSiteId": remote_id,
                          "remoteSiteName": str(hello.get("siteName", "")),
                          "operational": True})
            if remote_id:
                remotes[remote_id] = str(hello.get("siteName", ""))
        for hello in self._failed_incoming.values():
            links.append({"name": str(hello.get("link", "")),
                          "remoteSiteId": str(hello.get("siteId", "")),
                          "remoteSiteName": str(hello.get("siteName", "")),
                          "operational": False, "message": str(hello["message"])})
        network = [{
            "id": self._site.get("siteId", ""), "name": site_name,
            "namespace": self._namespace, "platform": "systemd", "version": __version__,
            "links": links,
        }] + [{"id": rid, "name": rname} for rid, rname in sorted(remotes.items())]
        if self.services is not None:
            network = self.services.network(network[0], network[1:])

        def change(site: Resource) -> None:
            status = site.setdefault("status", {})
            status["network"] = network
            status["sitesInNetwork"] = len(network)

        self._writer.submit("Site", site_name, change)


def _cost(link: Resource) -> int:
    try:
        return max(1, int(link.get("spec", {}).get("cost") or 1))
    except (TypeError, ValueError):
        return 1
