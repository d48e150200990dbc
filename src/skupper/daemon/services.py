"""The daemon's service traffic: control plane + bridge, hooked to the link manager.

The link manager tells this object when links come and go and hands it every stream a
peer opens; the Listener and Connector reconcilers configure it; it tells them (via
``notify``) when the network changed, so their Matched conditions follow, and the link
manager (via ``refresh_network``) so the Site's ``network`` status does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from skupper.router.bridge import ServiceBridge
from skupper.router.control import ControlPlane
from skupper.router.link import LinkConnection
from skupper.router.stream import LinkStream

log = logging.getLogger(__name__)


class ServiceRouter:
    def __init__(self, namespace: str) -> None:
        self._namespace = namespace
        self.control = ControlPlane(on_change=self._changed)
        self.bridge = ServiceBridge(self.control)
        # Set by the composition root.
        self.notify: Callable[[], None] = lambda: None
        self.refresh_network: Callable[[], None] = lambda: None

    def _changed(self) -> None:
        self.notify()
        self.refresh_network()

    # -- hooks for the link manager ---------------------------------------------------------

    def set_site(self, site_id: str, name: str, platform: str = "", version: str = "") -> None:
        self.control.set_local(site_id, name, self._namespace, platform, version)

    def link_up(self, conn: LinkConnection, *, outgoing: bool, cost: int = 1,
                name: str = "") -> None:
        self.control.link_up(conn, outgoing=outgoing, cost=cost, name=name)

    def link_down(self, conn: LinkConnection) -> None:
        self.control.link_down(conn)

    def site_name(self, site_id: str) -> str | None:
        """The name the network's adverts give ``site_id``, if any advert names it."""
        ad = self.control.table.ad(site_id)
        return ad.name if ad is not None else None

    def on_stream(self, stream: LinkStream) -> None:
        self.bridge.on_stream(stream)

    def network(self, own: dict[str, Any],
                neighbours: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The Site's ``network``: every reachable site with its links and services.

        ``own`` is this site's entry (with its links) and ``neighbours`` the sites it
        links with directly, as the link manager knows them.
        """
        table = self.control.table
        known = {entry.get("id"): entry for entry in neighbours}
        records = [{**own, "services": _services(table.ad(own.get("id", "")))}]
        for site_id in table.reachable:
            if site_id == own.get("id"):
                continue
            ad = table.ad(site_id)
            if ad is None:
                continue
            record: dict[str, Any] = {"id": site_id, "name": ad.name}
            for key, value in (("namespace", ad.namespace), ("platform", ad.platform),
                               ("version", ad.version)):
                if value:
                    record[key] = value
            record["links"] = [
                {"remoteSiteId": peer, "remoteSiteName": _name(table.ad(peer)),
                 "operational": True}
                for peer in sorted(ad.links)
            ]
            record["services"] = _services(ad)
            known.pop(site_id, None)
            records.append(record)
        # Linked sites whose advert has not arrived yet still show.
        records += list(known.values())
        return records

    def network_links(self) -> list[dict[str, Any]]:
        """Every link of the network once, from its adverts: who dialed, the cost, the name.

        A link counts once both ends advertise it (as routing does); its cost is the
        larger of the two ends' figures. ``from`` is the dialing site where it says so.
        """
        table = self.control.table
        reachable = set(table.reachable)
        out: dict[tuple[str, str], dict[str, Any]] = {}
        for site_id in sorted(reachable):
            ad = table.ad(site_id)
            if ad is None:
                continue
            for peer, cost in sorted(ad.links.items()):
                back = table.ad(peer)
                if peer not in reachable or back is None or site_id not in back.links:
                    continue
                pair = (min(site_id, peer), max(site_id, peer))
                if site_id in back.dialed and peer not in ad.dialed:
                    dialer, accepter, name = peer, site_id, back.dialed[site_id]
                elif peer in ad.dialed:
                    dialer, accepter, name = site_id, peer, ad.dialed[peer]
                else:
                    dialer, accepter, name = pair[0], pair[1], ""
                record = {"from": dialer, "to": accepter, "cost": max(cost, back.links[site_id]),
                          "dialed": bool(name)}
                if name:
                    record["name"] = name
                out.setdefault(pair, record)
        return [out[pair] for pair in sorted(out)]

    # -- for the reconcilers ----------------------------------------------------------------

    async def ensure_listener(self, name: str, key: str, host: str, port: int) -> None:
        await self.bridge.ensure_listener(name, key, host, port)

    async def remove_listener(self, name: str) -> None:
        await self.bridge.remove_listener(name)

    def ensure_connector(self, name: str, key: str, host: str, port: int) -> None:
        self.bridge.ensure_connector(name, key, host, port)

    def remove_connector(self, name: str) -> None:
        self.bridge.remove_connector(name)

    def has_connector(self, key: str) -> bool:
        return self.control.table.has_connector(key)

    def has_listener(self, key: str) -> bool:
        return self.control.table.has_listener(key)

    async def stop(self) -> None:
        await self.bridge.stop()
        await self.control.stop()


def _name(ad: Any) -> str:
    return str(ad.name) if ad is not None else ""


def _services(ad: Any) -> list[dict[str, Any]]:
    if ad is None:
        return []
    out = []
    for key, service in sorted(ad.services.items()):
        record: dict[str, Any] = {"routingKey": key}
        if service.connectors:
            record["connectors"] = list(service.connectors)
        if service.listeners:
            record["listeners"] = list(service.listeners)
        out.append(record)
    return out
