"""Network-wide advertisements: one control stream per link, adverts flooded to all.

Every stream a router opens on a link starts with a header saying what it is
(``{"t": "ctl"}`` for control, a connection's header for an application connection,
see ``router.stream_header``). The control stream of a link is opened by the
*accepting* side, once its stream handler is in place; the dialing side has its
handler from the start, so no stream can arrive before someone is there to take it.

On the control stream each side sends JSON lines: first ``{"op": "link", "cost": N}``
(the dialer knows the Link's cost; the link's cost is the larger of the two), then
``{"op": "ad", "ad": {...}}`` for every advert it holds, and from then on every newer
advert it learns from any other link (flooding; the sequence number stops echoes).
A site's own advert changes when its links or its services change; the sites that
lose their path to it stop routing to it (``router.routing``).

Memory is bounded: per link, at most one pending advert per site (a newer one
replaces an older one not yet sent), and lines are limited in size.

Adverts come from other sites and are checked (``SiteAd.from_wire``): ids are UUIDs,
names DNS-1123, numbers bounded. A neighbour's advert of itself must carry the name
its link hello gave (for an incoming link: its certificate's CN), and a neighbour's
advert is taken only from the neighbour itself, never relayed by another site. A
control line that breaks a rule closes its link, logged in one escaped line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from skupper.base.text import printable
from skupper.resources.model import MAX_LINK_COST
from skupper.router.link import LinkConnection
from skupper.router.log_limit import LogLimiter
from skupper.router.routing import AdError, RoutingTable, Service, SiteAd
from skupper.router.stream import LinkStream, StreamReset

log = logging.getLogger(__name__)

HEADER_CONTROL = "ctl"
# One advert line: a site with many services is a few tens of KiB.
MAX_CONTROL_LINE = 512 * 1024
# Sequence numbers start from a site's clock (in microseconds) and grow by one per
# change: one far ahead of this site's clock is forged (or from a very wrong clock),
# and taking it would freeze that site's advert everywhere until then.
MAX_SEQ_AHEAD_MICROSECONDS = 24 * 3600 * 1_000_000


def encode_line(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode() + b"\n"


@dataclass(eq=False)
class _Peer:
    conn: LinkConnection
    site_id: str
    up: bool = False  # the link manager reported it operational
    cost: int = 1  # what this side knows of the link's cost
    remote_cost: int = 0
    stream: LinkStream | None = None
    opened_here: bool = False  # we opened the control stream, so we write its header
    ready: bool = False  # the peer's "link" line arrived: usable for routing
    pending: dict[str, SiteAd] = field(default_factory=dict)
    outgoing: bool = False  # this site dialed the link
    name: str = ""  # the link's name (the dialer's Link)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def link_cost(self) -> int:
        return max(self.cost, self.remote_cost, 1)


class ControlPlane:
    """The routing table of this site, kept current over the control streams."""

    def __init__(self, on_change: Callable[[], None]) -> None:
        self._on_change = on_change
        self.table = RoutingTable("")
        self._peers: dict[LinkConnection, _Peer] = {}
        self._local: tuple[str, str, str] | None = None  # id, name, namespace
        self._facts: tuple[str, str] = ("", "")  # platform, version
        self._services: dict[str, Service] = {}
        # Newer wins everywhere; starting from the clock makes a restarted site's adverts
        # newer than those its previous run left in the network.
        self._seq = time.time_ns() // 1000
        # The newest relayed advert of each neighbour, not used while the neighbour
        # speaks for itself; taken if its last link goes (the relayed copy may be newer
        # than the last one it sent, e.g. the one saying that link is gone).
        self._relayed: dict[str, SiteAd] = {}
        # Sites whose advert held here is the one they sent themselves.
        self._from_itself: set[str] = set()
        self._dropped = LogLimiter(log)

    # -- the local site ----------------------------------------------------------------

    @property
    def local_id(self) -> str:
        return self._local[0] if self._local else ""

    def set_local(self, site_id: str, name: str, namespace: str, platform: str = "",
                  version: str = "") -> None:
        if self._local == (site_id, name, namespace) and self._facts == (platform, version):
            return
        self._local = (site_id, name, namespace)
        self._facts = (platform, version)
        self._advertise()

    def set_services(self, services: dict[str, Service]) -> None:
        if services == self._services:
            return
        self._services = dict(services)
        self._advertise()

    def _advertise(self) -> None:
        """Build our advert from the links and services we have now, and flood it."""
        if self._local is None:
            return
        links: dict[str, int] = {}
        for peer in self._peers.values():
            if peer.ready and peer.site_id and peer.site_id != self._local[0]:
                links[peer.site_id] = min(links.get(peer.site_id, peer.link_cost),
                                          peer.link_cost)
        self._seq += 1
        dialed = {peer.site_id: peer.name for peer in self._peers.values()
                  if peer.outgoing and peer.site_id in links}
        ad = SiteAd(self._local[0], self._local[1], self._seq, self._local[2],
                    links, self._services, *self._facts, dialed)
        self.table.set_local(ad)
        self._flood(ad, source=None)
        self._on_change()

    def _flood(self, ad: SiteAd, source: _Peer | None) -> None:
        for peer in self._peers.values():
            if peer is not source and peer.stream is not None:
                peer.pending[ad.site_id] = ad
                peer.wake.set()

    # -- links -------------------------------------------------------------------------

    def link_up(self, conn: LinkConnection, *, outgoing: bool, cost: int = 1,
                name: str = "") -> None:
        """A link is operational. The accepting side opens its control stream now."""
        peer = self._peer(conn)
        peer.up, peer.cost = True, min(max(1, int(cost)), MAX_LINK_COST)
        peer.outgoing, peer.name = outgoing, name
        if not outgoing and peer.stream is None:
            try:
                stream = conn.open_stream()
            except Exception as exc:  # the link closed meanwhile: link_down follows
                log.debug("no control stream on a closing link: %s", exc)
                return
            peer.stream, peer.opened_here = stream, True
        self._maybe_start(peer)

    def link_down(self, conn: LinkConnection) -> None:
        peer = self._peers.pop(conn, None)
        if peer is None:
            return
        for task in peer.tasks:
            task.cancel()
        relayed = self._relayed.pop(peer.site_id, None)
        if relayed is not None and not self._is_neighbour(peer.site_id) \
                and self.table.update(relayed):
            self._from_itself.discard(peer.site_id)
            self._flood(relayed, source=None)
            self._on_change()
        if peer.ready:
            self._advertise()

    async def accept(self, stream: LinkStream) -> None:
        """The peer opened this link's control stream (we are the dialing side)."""
        peer = self._peer(stream.link)
        if peer.stream is not None:
            stream.reset()
            return
        peer.stream = stream
        self._maybe_start(peer)

    def connection_to(self, site_id: str) -> LinkConnection | None:
        """The cheapest ready link to the neighbour ``site_id``."""
        best: _Peer | None = None
        for peer in self._peers.values():
            if peer.ready and peer.site_id == site_id and not peer.conn.is_closed and (
                    best is None or peer.link_cost < best.link_cost):
                best = peer
        return best.conn if best else None

    def _peer(self, conn: LinkConnection) -> _Peer:
        peer = self._peers.get(conn)
        if peer is None:
            peer = _Peer(conn, str(conn.remote_hello.get("siteId", "")))
            self._peers[conn] = peer
        return peer

    def _maybe_start(self, peer: _Peer) -> None:
        if not peer.up or peer.stream is None or peer.tasks:
            return
        peer.site_id = str(peer.conn.remote_hello.get("siteId", ""))
        loop = asyncio.get_running_loop()
        peer.tasks = [loop.create_task(self._write_loop(peer), name="control-write"),
                      loop.create_task(self._read_loop(peer), name="control-read")]

    # -- the control stream --------------------------------------------------------------

    async def _write_loop(self, peer: _Peer) -> None:
        assert peer.stream is not None
        stream = peer.stream
        first = [encode_line({"t": HEADER_CONTROL})] if peer.opened_here else []
        first.append(encode_line({"op": "link", "cost": peer.cost}))
        reachable = set(self.table.reachable)
        first += [encode_line({"op": "ad", "ad": ad.to_wire()})
                  for site_id, ad in self.table.ads.items() if site_id in reachable]
        try:
            await stream.write(b"".join(first))
            while True:
                await peer.wake.wait()
                peer.wake.clear()
                batch, peer.pending = list(peer.pending.values()), {}
                if batch:
                    await stream.write(b"".join(
                        encode_line({"op": "ad", "ad": ad.to_wire()}) for ad in batch))
        except (StreamReset, ConnectionError) as exc:
            self._broken(peer, f"the link's control stream failed: {exc}")

    async def _read_loop(self, peer: _Peer) -> None:
        assert peer.stream is not None
        stream = peer.stream
        try:
            while True:
                line = await stream.readline(MAX_CONTROL_LINE)
                self._handle(peer, json.loads(line))
        except (StreamReset, ConnectionError) as exc:
            self._broken(peer, f"the link's control stream ended: {exc}")
        except (ValueError, AdError) as exc:
            self._broken(peer, f"the remote site sent a malformed advert: {exc}")

    def _handle(self, peer: _Peer, message: Any) -> None:
        if not isinstance(message, dict):
            raise AdError("a control message must be an object")
        op = message.get("op")
        if op == "link":
            cost = message.get("cost")
            if not isinstance(cost, int) or isinstance(cost, bool) \
                    or not 0 <= cost <= MAX_LINK_COST:
                raise AdError(f"a link cost must be a number in 0..{MAX_LINK_COST}")
            peer.remote_cost = cost
            if not peer.ready:
                peer.ready = True
                self._advertise()
        elif op == "ad":
            ad = SiteAd.from_wire(message.get("ad"))
            if ad.seq > time.time_ns() // 1000 + MAX_SEQ_AHEAD_MICROSECONDS:
                self._dropped.info("advert of site %s (%s) dropped: its sequence number is "
                                   "more than a day ahead of this site's clock", ad.name,
                                   ad.site_id)
                return
            if ad.site_id == peer.site_id:
                if ad.name != peer.conn.remote_hello.get("siteName"):
                    raise AdError(f"the advert of site {ad.name} contradicts its link hello "
                                  f"({peer.conn.remote_hello.get('siteName')})")
                # What others relayed gives way to what the site says itself.
                changed = self.table.update(ad, replace=ad.site_id not in self._from_itself)
                if self.table.ad(ad.site_id) == ad:
                    self._remember_from_itself(ad.site_id)
            elif self._is_neighbour(ad.site_id):
                # A neighbour speaks for itself: a relayed copy waits (see link_down).
                held = self._relayed.get(ad.site_id)
                if held is None or held.seq < ad.seq:
                    self._relayed[ad.site_id] = ad
                return
            else:
                changed = self.table.update(ad)
                if changed:
                    self._from_itself.discard(ad.site_id)
            if changed:
                self._flood(ad, source=peer)
                self._on_change()
        # Unknown operations are ignored, so newer sites can add some.

    def _remember_from_itself(self, site_id: str) -> None:
        self._from_itself.add(site_id)
        if len(self._from_itself) > 2 * len(self.table.ads):
            self._from_itself &= set(self.table.ads)  # forget sites the table dropped

    def _is_neighbour(self, site_id: str) -> bool:
        return any(p.site_id == site_id and p.stream is not None and not p.conn.is_closed
                   for p in self._peers.values())

    def _broken(self, peer: _Peer, reason: str) -> None:
        """A link without its control stream cannot route: close it (it is redialed)."""
        if self._peers.get(peer.conn) is not peer or peer.conn.is_closed:
            return  # already said (the other loop of the same stream fails after it)
        reason = printable(reason, 300)
        log.warning("%s; closing the link %s to site %s", reason,
                    peer.conn.remote_hello.get("link", ""),
                    peer.conn.remote_hello.get("siteName", ""))
        peer.conn.close(reason)

    async def stop(self) -> None:
        tasks = [task for peer in self._peers.values() for task in peer.tasks]
        for task in tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*tasks, return_exceptions=True)
        self._peers.clear()
