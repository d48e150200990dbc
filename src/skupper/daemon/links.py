"""The daemon's link manager: one dialer per Link, incoming links, and their status.

It owns the Operational condition of Links and the ``network`` part of the Site's
status (which sites this one is linked with, and how), and ``incomingLinks``: each
link another site made to this one, named by what its certificate proves.

Incoming hellos are bound to their certificate by the listener (the site name must be
the certificate's CN); this manager adds what only the whole site knows (``admit``): a
hello may not claim this site's own id, nor a site id this site knows under another
name (from a link or an advert), and one certificate speaks for one site id. An
outgoing link's remote is held to the same rule (``_check_remote``).

A generated link's certificate (``controller.generated_links``) names no site: the first
site that links with it is bound to it for good (written into its ``generatedLinks``
entry), and any other site presenting it is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, OrderedDict
from typing import Any

from skupper import __version__
from skupper.base.text import printable
from skupper.certs.tls import GENERATED_LINK_UNIT, PeerCertificate, client_context
from skupper.controller.link import LINK_REQUIRED, dial_endpoint
from skupper.daemon.metrics import LinkFigures
from skupper.daemon.status_writer import StatusWriter
from skupper.grants.redemption import grant_of_unit
from skupper.resources import Resource
from skupper.resources.generated_links import GENERATED_LINKS, generated_links
from skupper.resources.model import MAX_LINK_COST
from skupper.resources.status import derive_ready, set_condition
from skupper.router.dialer import Dialer, DialTarget, LinkReport
from skupper.router.link import HEARTBEAT_LOST, LinkConnection

log = logging.getLogger(__name__)

# Site ids (and certificate serials) remembered with the identity first seen for them.
MAX_PINNED = 4096
# The Site's network is rewritten at most this often: links and adverts from other
# sites change it, and a peer that floods them must not make this site write its
# status (up to a few hundred KiB) as fast as the disk allows.
NETWORK_WRITE_INTERVAL_SECONDS = 0.25


class _Pins:
    """A bounded map that forgets its oldest entries first."""

    def __init__(self) -> None:
        self._entries: OrderedDict[Any, str] = OrderedDict()

    def get(self, key: Any) -> str | None:
        return self._entries.get(key)

    def set(self, key: Any, value: str) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > MAX_PINNED:
            self._entries.popitem(last=False)

# Incoming links whose dialer went silent (the heartbeat gave up: a partition, a host
# gone dark) stay listed as not operational, with the reason, until their dialer is
# back; at most this many. Links closed or reset by their dialer just disappear, as
# before: a reset means the dialer's host answered, and it redials if it can.
MAX_FAILED_INCOMING = 32


class LinkManager:
    def __init__(self, writer: StatusWriter, namespace: str, platform: str = "systemd") -> None:
        self._writer = writer
        self._namespace = namespace
        self._platform = platform
        self._site: dict[str, str] = {}
        self._dialers: dict[str, tuple[Dialer, asyncio.Task[None], tuple[Any, ...]]] = {}
        self._outgoing: dict[str, LinkReport] = {}
        # Per incoming link: its entry in the Site's incomingLinks (name, remote site's
        # id and name, certificate serial, grant).
        self._incoming: dict[LinkConnection, dict[str, str]] = {}
        self._incoming_serials: dict[LinkConnection, int] = {}
        self._site_names = _Pins()  # site id -> the site name it came with
        self._certificate_sites = _Pins()  # certificate serial -> the site id it spoke for
        self._revoked_serials: set[int] = set()
        self._revoked_grants: set[str] = set()
        # Generated links by certificate serial (hex): name, and the site bound to it.
        self._generated: dict[str, dict[str, str]] = {}
        # Service traffic (daemon.services.ServiceRouter), set by the daemon: told of every
        # link that comes and goes, handed every stream a peer opens.
        self.services: Any = None
        self._costs: dict[str, int] = {}
        self._outgoing_connections: dict[str, LinkConnection] = {}
        # The network as last written to the Site's status (daemon.observation reads it),
        # and how often each outgoing link was dialed again after it went down.
        self.network: list[dict[str, Any]] = []
        self.network_links: list[dict[str, Any]] = []
        self.reconnects: Counter[str] = Counter()
        self._network_due: asyncio.TimerHandle | None = None
        self._network_written_at = float("-inf")
        self._stopping = False
        # Incoming links the heartbeat gave up on, by link name (see MAX_FAILED_INCOMING).
        self._failed_incoming: dict[str, dict[str, Any]] = {}

    # -- who we are ---------------------------------------------------------------------

    def set_site(self, site: Resource) -> None:
        first = not self._site
        self._site = {"siteId": str(site["metadata"].get("uid", "")),
                      "siteName": str(site["metadata"]["name"])}
        if self.services is not None:
            self.services.set_site(self._site["siteId"], self._site["siteName"],
                                   self._platform, __version__)
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
                        on_stream=self._on_stream, on_connection=self._on_connection,
                        check_remote=self._check_remote)
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

    def _on_stream(self, stream: Any) -> None:
        if self.services is not None:
            self.services.on_stream(stream)
        else:
            stream.reset()

    def _on_connection(self, name: str, connection: LinkConnection | None) -> None:
        if self.services is None:
            return
        if connection is not None:
            self._outgoing_connections[name] = connection
            self.services.link_up(connection, outgoing=True, cost=self._costs.get(name, 1),
                                  name=name)
        elif (old := self._outgoing_connections.pop(name, None)) is not None:
            self.services.link_down(old)

    async def stop(self) -> None:
        if self._network_due is not None:  # the network as it was, up to the stop
            self._network_due.cancel()
            self._write_network()
        # The links this stop closes are not news: a stopped site's status keeps the
        # network as the daemon last saw it running (link status shows it as Stopped).
        self._stopping = True
        for name in list(self._dialers):
            await self.remove_link(name)

    def _report(self, name: str, report: LinkReport) -> None:
        if name not in self._dialers and report.operational:
            return
        before = self._outgoing.get(name)
        if before is not None and before.operational and not report.operational:
            self.reconnects[name] += 1  # the dialer dials it again from here
        self._outgoing[name] = report

        def change(link: Resource) -> None:
            status = link.setdefault("status", {})
            set_condition(link, "Configured", True, "Configured", "OK")
            if report.operational:
                set_condition(link, "Operational", True, "Operational", "OK")
                # The remote hello was checked (router.hello): a UUID and a DNS-1123 name.
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

    def admit(self, claimed: dict[str, Any], cert: PeerCertificate) -> str | None:
        """Why an incoming hello (already checked, its name = its CN) is refused, or None."""
        site_id, name = str(claimed["siteId"]), str(claimed["siteName"])
        if site_id == self._site.get("siteId"):
            return "the link hello claims this site's own id"
        known = self.site_name_of(site_id)
        if known is not None and known != name:
            return f"site id {site_id} belongs to site {printable(known, 63)}, not {name}"
        if cert.unit == GENERATED_LINK_UNIT and cert.serial is not None:
            bound = self._generated.get(format(cert.serial, "x")) or {}
            if bound.get("remoteSiteId") not in (None, site_id):
                return (f"the certificate of generated link {bound.get('name')} belongs to "
                        f"site {printable(bound.get('remoteSiteName', '?'), 63)}")
        if cert.serial is not None:
            spoke_for = self._certificate_sites.get(cert.serial)
            if spoke_for is not None and spoke_for != site_id:
                return (f"certificate {cert.serial:x} already speaks for the site with id "
                        f"{spoke_for}")
        return None

    def site_name_of(self, site_id: str) -> str | None:
        """The name this site knows ``site_id`` by: from a link, else from an advert."""
        pinned = self._site_names.get(site_id)
        if pinned is not None:
            return pinned
        if self.services is not None:
            advertised = self.services.site_name(site_id)
            return str(advertised) if advertised is not None else None
        return None

    def on_incoming(self, connection: LinkConnection, serial: int | None) -> None:
        if serial is None:
            entry = self._incoming.pop(connection, None)
            self._incoming_serials.pop(connection, None)
            # Before the services hear of it: they rewrite the network at once, and the
            # link must then already show as failed, never as gone.
            self._remember_failed(entry, connection)
            if self.services is not None:
                self.services.link_down(connection)
        elif self.is_revoked(serial, connection.peer_unit):
            # Its hello was judged before this run took the site's revocation lists (a
            # dialer quick after a start): judged again now, it never counts as up.
            log.info("closing link %s: its certificate %x is revoked",
                     printable(connection.remote_hello.get("link", "?")), serial)
            connection.revoke()
        else:
            hello = connection.remote_hello
            site_id, name = str(hello["siteId"]), str(hello["siteName"])
            self._site_names.set(site_id, name)
            self._certificate_sites.set(serial, site_id)
            self._failed_incoming.pop(str(hello["link"]), None)
            self._incoming[connection] = {
                "name": str(hello["link"]), "remoteSiteId": site_id, "remoteSiteName": name,
                "certificate": format(serial, "x"),
                "grant": grant_of_unit(connection.peer_unit) or "",
            }
            self._incoming_serials[connection] = serial
            if connection.peer_unit == GENERATED_LINK_UNIT:
                self._bind_generated(format(serial, "x"), site_id, name)
            if self.services is not None:
                connection.set_stream_handler(self.services.on_stream)
                self.services.link_up(connection, outgoing=False,
                                      name=str(connection.remote_hello.get("link", "")))
        self._update_network()

    def _check_remote(self, remote: dict[str, Any]) -> str | None:
        """Why an outgoing link's remote (its checked hello) is refused here, or None.

        The same rule as for incoming links: one site id, one name. The remote's server
        certificate proves only that the token's issuer runs it, so it does not win
        over what this site already knows.
        """
        site_id, name = str(remote["siteId"]), str(remote["siteName"])
        if site_id == self._site.get("siteId"):
            return "the remote site claims this site's own id"
        known = self.site_name_of(site_id)
        if known is not None and known != name:
            return (f"the remote site claims site id {site_id}, which belongs to site "
                    f"{printable(known, 63)}, not {name}")
        self._site_names.set(site_id, name)
        return None

    def _remember_failed(self, entry: dict[str, str] | None, connection: LinkConnection) -> None:
        """A dialer gone silent is news for the operator at this end too: keep its row."""
        reason = connection.close_reason or ""
        if entry is None or not reason.startswith(HEARTBEAT_LOST) or any(
            other["name"] == entry["name"] for other in self._incoming.values()
        ):
            return
        self._failed_incoming.pop(entry["name"], None)
        self._failed_incoming[entry["name"]] = {**entry, "operational": False,
                                                "message": reason}
        while len(self._failed_incoming) > MAX_FAILED_INCOMING:
            self._failed_incoming.pop(next(iter(self._failed_incoming)))

    # -- generated links ---------------------------------------------------------------

    def set_generated_links(self, site: Resource) -> None:
        """Take the site's generated links; a binding made here and not yet written stays."""
        taken: dict[str, dict[str, str]] = {}
        for entry in generated_links(site):
            serial = str(entry["serial"])
            known = {key: str(entry[key]) for key in ("name", "remoteSiteId", "remoteSiteName")
                     if entry.get(key)}
            pending = self._generated.get(serial) or {}
            if "remoteSiteId" not in known and pending.get("remoteSiteId"):
                known.update(remoteSiteId=pending["remoteSiteId"],
                             remoteSiteName=pending.get("remoteSiteName", ""))
            taken[serial] = known
        self._generated = taken

    def _bind_generated(self, serial: str, site_id: str, site_name: str) -> None:
        """The first site to link with a generated link's certificate owns it from now on."""
        entry = self._generated.get(serial)
        if entry is None or entry.get("remoteSiteId"):
            return
        entry.update(remoteSiteId=site_id, remoteSiteName=site_name)
        log.info("generated link %s is bound to site %s (%s)", entry.get("name"), site_name,
                 site_id)

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
                entry = self._incoming.get(connection, {})
                log.info("closing link %s from site %s: its certificate %x is revoked",
                         entry.get("name"), entry.get("remoteSiteName"), serial)
                connection.revoke()

    # -- the site's view of the network ---------------------------------------------

    def refresh_network(self) -> None:
        self._update_network()

    def link_figures(self) -> list[LinkFigures]:
        """This site's links, live, for the metrics and the console."""
        figures = []
        for name, report in sorted(self._outgoing.items()):
            conn = self._outgoing_connections.get(name)
            figures.append(_figures(name, "outgoing", str(report.remote.get("siteName", "")),
                                    report.operational, conn))
        for conn, entry in self._incoming.items():
            figures.append(_figures(entry["name"], "incoming", entry["remoteSiteName"], True,
                                    conn))
        return figures

    def _update_network(self) -> None:
        """Write the Site's network now, or once the write interval has passed."""
        if self._stopping:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a unit test): nothing to pace
            self._write_network()
            return
        if self._network_due is not None:
            return  # a write is due already; it will see this change
        wait = self._network_written_at + NETWORK_WRITE_INTERVAL_SECONDS - loop.time()
        if wait > 0:
            self._network_due = loop.call_later(wait, self._write_network)
        else:
            self._write_network()

    def _write_network(self) -> None:
        self._network_due = None
        with contextlib.suppress(RuntimeError):
            self._network_written_at = asyncio.get_running_loop().time()
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
        incoming = sorted(self._incoming.values(),
                          key=lambda entry: (entry["name"], entry["certificate"]))
        for entry in incoming:
            remote_id = entry["remoteSiteId"]
            links.append({"name": entry["name"], "remoteSiteId": remote_id,
                          "remoteSiteName": entry["remoteSiteName"], "operational": True})
            remotes[remote_id] = entry["remoteSiteName"]
        failed = list(self._failed_incoming.values())
        for entry in failed:
            # Upstream's network[].links has no message: the reason is in incomingLinks.
            links.append({"name": entry["name"], "remoteSiteId": entry["remoteSiteId"],
                          "remoteSiteName": entry["remoteSiteName"], "operational": False})
        network = [{
            "id": self._site.get("siteId", ""), "name": site_name,
            "namespace": self._namespace, "platform": self._platform, "version": __version__,
            "links": links,
        }] + [{"id": rid, "name": rname} for rid, rname in sorted(remotes.items())]
        network_links: list[dict[str, Any]] = []
        if self.services is not None:
            network = self.services.network(network[0], network[1:])
            network_links = self.services.network_links()
        self.network, self.network_links = network, network_links
        # Bindings of generated links ride on this write: a later one replaces it (the
        # writer keeps the newest change per resource) and carries them again.
        bindings = {serial: entry for serial, entry in self._generated.items()
                    if entry.get("remoteSiteId")}

        def change(site: Resource) -> None:
            status = site.setdefault("status", {})
            for generated in status.get(GENERATED_LINKS) or []:
                bound = bindings.get(str(generated.get("serial"))) \
                    if isinstance(generated, dict) else None
                if bound and not generated.get("remoteSiteId"):
                    generated["remoteSiteId"] = bound["remoteSiteId"]
                    generated["remoteSiteName"] = bound.get("remoteSiteName", "")
            status["network"] = network
            status["networkLinks"] = network_links
            status["sitesInNetwork"] = len(network)
            # Apart from the network's links, which do not say their direction: an
            # incoming link's name is the dialer's choice, so it may equal an outgoing
            # link's or another incoming one's; the certificate tells them apart.
            status["incomingLinks"] = [dict(entry) for entry in [*incoming, *failed]]

        self._writer.submit("Site", site_name, change)


def _figures(name: str, direction: str, remote: str, up: bool,
             conn: LinkConnection | None) -> LinkFigures:
    if conn is None:
        return LinkFigures(name, direction, remote, up)
    return LinkFigures(name, direction, remote, up and not conn.is_closed, conn.rtt,
                       conn.bytes_sent, conn.bytes_received)


def _cost(link: Resource) -> int:
    """The Link's cost within 1..MAX_LINK_COST (the peer refuses anything else)."""
    cost = link.get("spec", {}).get("cost") or 1
    if isinstance(cost, str) and cost.isdigit() and len(cost) <= 7:
        cost = int(cost)
    if not isinstance(cost, int) or isinstance(cost, bool):
        return 1
    return min(max(1, cost), MAX_LINK_COST)
