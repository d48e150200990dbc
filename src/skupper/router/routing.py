"""The network map and path choice: pure, table-driven, no I/O.

Every site floods an advertisement of itself (``SiteAd``): its links with their cost
and the routing keys of its connectors and listeners, with a sequence number so the
newest copy wins. From the adverts it holds, a site computes cost-weighted shortest
paths (Dijkstra) over links that *both* ends advertise, so a withdrawn or stale link
is never used. Sites no path reaches are not in the network; their adverts are kept
(an advert may arrive before the one that makes its site reachable) until room is
needed.

A routing key is reachable when some reachable site (this one included) advertises a
connector for it. New connections share the load among those sites: the one with the
fewest connections this site has open to it, ties broken round robin, so sequential
and concurrent connections both spread.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from skupper.base.text import is_printable
from skupper.resources.model import MAX_LINK_COST, valid_name
from skupper.router.hello import canonical_uuid

# Bounds on what a peer can make us hold or compute (adverts come from other sites).
MAX_SITES = 1024
MAX_LINKS_PER_SITE = 256
MAX_SERVICES_PER_SITE = 4096
MAX_NAME_LENGTH = 253
MAX_COST = MAX_LINK_COST
# Sequence numbers start from the clock in microseconds; 2**63 is far past any of them.
MAX_SEQ = 2**63 - 1


class AdError(ValueError):
    """An advertisement that does not have the agreed shape or breaks a limit."""


@dataclass(frozen=True)
class Service:
    """What one site has for one routing key: names of its connectors and listeners."""

    connectors: tuple[str, ...] = ()
    listeners: tuple[str, ...] = ()


@dataclass(frozen=True)
class SiteAd:
    site_id: str
    name: str
    seq: int
    namespace: str = ""
    links: Mapping[str, int] = field(default_factory=dict)  # neighbour site id -> cost
    services: Mapping[str, Service] = field(default_factory=dict)  # routing key -> service
    # What people see of the site (network status): its platform and version, and which
    # of its links it dialed (neighbour site id -> the link's name).
    platform: str = ""
    version: str = ""
    dialed: Mapping[str, str] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.site_id, "name": self.name, "ns": self.namespace, "seq": self.seq,
            "links": dict(self.links),
            "services": {key: {"c": list(s.connectors), "l": list(s.listeners)}
                         for key, s in self.services.items()},
            "platform": self.platform, "version": self.version, "dialed": dict(self.dialed),
        }

    @classmethod
    def from_wire(cls, doc: Any) -> SiteAd:
        """Parse and check a peer's advert; AdError if it is malformed or too big."""
        if not isinstance(doc, dict):
            raise AdError("an advert must be an object")
        site_id, name, ns, seq = doc.get("id"), doc.get("name"), doc.get("ns", ""), doc.get("seq")
        if not canonical_uuid(site_id):
            raise AdError("an advert needs a site id (a canonical UUID)")
        if not isinstance(name, str) or not valid_name(name):
            raise AdError("an advert needs a site name (DNS-1123)")
        if not isinstance(ns, str) or (ns and not valid_name(ns)):
            raise AdError("an advert's namespace must be a DNS-1123 name")
        if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq <= MAX_SEQ:
            raise AdError(f"an advert needs a sequence number in 0..{MAX_SEQ}")
        links_doc, services_doc = doc.get("links", {}), doc.get("services", {})
        if not isinstance(links_doc, dict) or len(links_doc) > MAX_LINKS_PER_SITE:
            raise AdError("bad links")
        if not isinstance(services_doc, dict) or len(services_doc) > MAX_SERVICES_PER_SITE:
            raise AdError("bad services")
        links: dict[str, int] = {}
        for peer, cost in links_doc.items():
            if not canonical_uuid(peer) or not isinstance(cost, int) or isinstance(cost, bool) \
                    or not 0 < cost <= MAX_COST:
                raise AdError(f"bad link (a site id and a cost in 1..{MAX_COST})")
            links[peer] = cost
        services: dict[str, Service] = {}
        for key, entry in services_doc.items():
            if not _short_str(key) or not isinstance(entry, dict):
                raise AdError("bad service")
            connectors, listeners = entry.get("c", []), entry.get("l", [])
            if not _str_list(connectors) or not _str_list(listeners):
                raise AdError("bad service names")
            services[key] = Service(tuple(connectors), tuple(listeners))
        # Older sites send none of these; what is sent must be short, printable text.
        platform, version = doc.get("platform", ""), doc.get("version", "")
        dialed = doc.get("dialed", {})
        if not all(value == "" or _short_str(value) for value in (platform, version)):
            raise AdError("bad platform or version")
        if not isinstance(dialed, dict) or len(dialed) > MAX_LINKS_PER_SITE or not all(
                canonical_uuid(peer) and isinstance(link, str) and valid_name(link)
                for peer, link in dialed.items()):
            raise AdError("bad dialed links (site ids and link names)")
        return cls(str(site_id), name, seq, ns, links, services, platform, version, dict(dialed))


def _short_str(value: Any) -> bool:
    """A routing key or a listener's or connector's name: short and printable (upstream
    allows more than DNS-1123 in routing keys, so only what is unsafe to show is out)."""
    return isinstance(value, str) and 0 < len(value) <= MAX_NAME_LENGTH and is_printable(value)


def _str_list(value: Any) -> bool:
    return isinstance(value, list) and len(value) <= 64 and all(_short_str(v) for v in value)


@dataclass(frozen=True)
class Route:
    """How to reach ``site_id``: through the neighbour ``next_hop`` at total ``cost``.

    For this site itself, ``next_hop`` is "" and ``cost`` 0.
    """

    site_id: str
    next_hop: str
    cost: int
    previous: str = ""  # the site before this one on the path ("" for this site)


class RoutingTable:
    """Adverts by site and the shortest paths from the local site over them."""

    def __init__(self, local_id: str) -> None:
        self.local_id = local_id
        self._ads: dict[str, SiteAd] = {}
        self._routes: dict[str, Route] = {}
        self._active: dict[str, int] = {}  # destination site id -> connections open to it
        self._turn = itertools.count()
        self._last_pick: dict[str, int] = {}  # destination -> turn it was last chosen

    # -- adverts -------------------------------------------------------------------

    @property
    def ads(self) -> dict[str, SiteAd]:
        return dict(self._ads)

    def ad(self, site_id: str) -> SiteAd | None:
        return self._ads.get(site_id)

    def update(self, ad: SiteAd, *, replace: bool = False) -> bool:
        """Store ``ad`` if it is newer than what we hold; True if the table changed.

        ``replace``: store it unless it is what we hold, newer or not (a site speaking
        for itself overrides what others relayed). Our own advert is only ever set
        locally (``set_local``), never from a peer.
        """
        if ad.site_id == self.local_id:
            return False
        held = self._ads.get(ad.site_id)
        if held is not None and (held == ad if replace else held.seq >= ad.seq):
            return False
        if held is None and len(self._ads) >= MAX_SITES:
            unreachable = [s for s in self._ads if s not in self._routes]
            if not unreachable:
                return False
            del self._ads[unreachable[0]]
        self._ads[ad.site_id] = ad
        self._recompute()
        return True

    def set_local(self, ad: SiteAd) -> None:
        self.local_id = ad.site_id
        self._ads[ad.site_id] = ad
        self._recompute()

    # -- paths -----------------------------------------------------------------------

    def _recompute(self) -> None:
        """Dijkstra from the local site over links both ends advertise; forget the rest."""
        routes: dict[str, Route] = {}
        if self.local_id in self._ads:
            counter = itertools.count()  # tie-break so heap entries never compare strings
            heap: list[tuple[int, int, str, str, str]] = [
                (0, next(counter), self.local_id, "", "")]
            while heap:
                cost, _, site, hop, previous = heapq.heappop(heap)
                if site in routes:
                    continue
                routes[site] = Route(site, hop, cost, previous)
                ad = self._ads.get(site)
                if ad is None:
                    continue
                for peer, link_cost in sorted(ad.links.items()):
                    back = self._ads.get(peer)
                    if peer in routes or back is None or site not in back.links:
                        continue
                    cost_both = max(link_cost, back.links[site])
                    heapq.heappush(heap, (cost + cost_both, next(counter), peer,
                                          hop or peer, site))
        self._routes = routes

    def route(self, site_id: str) -> Route | None:
        return self._routes.get(site_id)

    def path(self, site_id: str) -> list[str]:
        """The sites a connection to ``site_id`` crosses, this one first; [] if unreachable."""
        sites: list[str] = []
        route = self._routes.get(site_id)
        while route is not None and len(sites) <= len(self._routes):
            sites.append(route.site_id)
            route = self._routes.get(route.previous) if route.previous else None
        return sites[::-1]

    @property
    def reachable(self) -> list[str]:
        """Reachable site ids, this one first, then by cost and id."""
        return [r.site_id for r in sorted(self._routes.values(),
                                          key=lambda r: (r.cost, r.site_id))]

    def destinations(self, key: str) -> list[str]:
        """Reachable sites with a connector for ``key``, nearest first."""
        return [site for site in self.reachable
                if (svc := self._ads[site].services.get(key)) is not None and svc.connectors]

    def has_connector(self, key: str) -> bool:
        return bool(self.destinations(key))

    def has_listener(self, key: str) -> bool:
        return any((svc := self._ads[site].services.get(key)) is not None and svc.listeners
                   for site in self._routes)

    def keys_with_connectors(self) -> set[str]:
        return {key for site in self._routes for key, svc in self._ads[site].services.items()
                if svc.connectors}

    # -- load sharing -----------------------------------------------------------------

    def choose(self, key: str) -> Route | None:
        """Pick the destination for a new connection to ``key`` (None: unreachable)."""
        candidates = self.destinations(key)
        if not candidates:
            return None
        best = min(candidates, key=lambda s: (self._active.get(s, 0),
                                              self._last_pick.get(s, -1)))
        self._last_pick[best] = next(self._turn)
        return self._routes[best]

    def opened(self, site_id: str) -> None:
        self._active[site_id] = self._active.get(site_id, 0) + 1

    def closed(self, site_id: str) -> None:
        left = self._active.get(site_id, 0) - 1
        if left > 0:
            self._active[site_id] = left
        else:
            self._active.pop(site_id, None)


def services_of(
    connectors: Iterable[tuple[str, str]], listeners: Iterable[tuple[str, str]]
) -> dict[str, Service]:
    """Group (name, routing key) pairs into one Service per key, names sorted."""
    by_key: dict[str, tuple[list[str], list[str]]] = {}
    for name, key in connectors:
        by_key.setdefault(key, ([], []))[0].append(name)
    for name, key in listeners:
        by_key.setdefault(key, ([], []))[1].append(name)
    return {key: Service(tuple(sorted(conns)), tuple(sorted(lists)))
            for key, (conns, lists) in sorted(by_key.items())}
