"""The network as people read it: sites, links and services, from a Site's ``network``.

Every site's daemon writes the network it knows into its Site's ``status.network`` (one
entry per reachable site, with that site's links and services, from the adverts every
site floods). ``network_document`` turns that list into the shape ``skupper network
status -o json|yaml`` prints and the console's ``GET /api/network`` serves:

    sites:    [{id, name, namespace, platform, version}]
    links:    [{name, fromSite, toSite, direction, cost, state, rttSeconds}]
    services: [{routingKey, listeners: [{site, name}], connectors: [{site, name}]}]

A link appears once, from the site that dialed it (``fromSite``) to the one that
accepted it, with the cost both ends agree on: the Site's ``networkLinks`` (written
from the adverts every site floods) says so, so the document is the same from every
site of the network, but for what only the asking site knows: its own links that are
down, and their ``rttSeconds`` (the console adds them live).
"""

from __future__ import annotations

from typing import Any

UNKNOWN = "-"


def network_document(entries: list[dict[str, Any]], own_id: str,
                     network_links: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """``network_links`` (the Site's ``networkLinks``) says who dialed each link and its
    cost; without it, links come from the entries alone (direction and cost unknown)."""
    names = {str(e.get("id", "")): str(e.get("name", "")) for e in entries}
    sites = [{key: str(entry.get(key) or UNKNOWN)
              for key in ("id", "name", "namespace", "platform", "version")}
             for entry in entries]
    links = (_advertised_links(network_links, entries, own_id, names)
             if network_links is not None else _entry_links(entries, own_id, names))
    services: dict[str, dict[str, list[dict[str, str]]]] = {}
    for entry in entries:
        site = str(entry.get("name", ""))
        for service in entry.get("services") or []:
            key = str(service.get("routingKey", ""))
            held = services.setdefault(key, {"listeners": [], "connectors": []})
            for role in ("listeners", "connectors"):
                held[role] += [{"site": site, "name": str(n)} for n in service.get(role) or []]
    return {
        "sites": sorted(sites, key=lambda s: (s["id"] != own_id, s["name"], s["id"])),
        "links": sorted(links, key=lambda lk: (lk["fromSite"], lk["toSite"], lk["name"])),
        "services": [{"routingKey": key,
                      "listeners": sorted(held["listeners"], key=_by_site),
                      "connectors": sorted(held["connectors"], key=_by_site)}
                     for key, held in sorted(services.items())],
    }


def _advertised_links(network_links: list[dict[str, Any]], entries: list[dict[str, Any]],
                      own_id: str, names: dict[str, str]) -> list[dict[str, Any]]:
    """Every link up in the network (from the adverts), and this site's links that are down."""
    links = [{
        "name": str(link.get("name") or UNKNOWN),
        "fromSite": names.get(str(link.get("from")), UNKNOWN),
        "toSite": names.get(str(link.get("to")), UNKNOWN),
        "direction": "outgoing" if link.get("dialed") else UNKNOWN,
        "cost": link["cost"] if isinstance(link.get("cost"), int) else UNKNOWN,
        "state": "up",
    } for link in network_links]
    own = next((e for e in entries if str(e.get("id", "")) == own_id), {})
    for link in own.get("links") or []:
        if not link.get("operational"):  # only outgoing links are listed while down
            links.append(_link(own_id, str(link.get("remoteSiteId", "")),
                               {**link, "direction": "outgoing"}, names))
    return links


def _entry_links(entries: list[dict[str, Any]], own_id: str,
                 names: dict[str, str]) -> list[dict[str, Any]]:
    # Views of links by site pair: the pair's named links (as their sites report them)
    # win over a remote advert's unnamed view of the same pair.
    pairs: dict[tuple[str, ...], dict[str, dict[str, Any]]] = {}
    for entry in entries:
        site_id = str(entry.get("id", ""))
        for link in entry.get("links") or []:
            peer = str(link.get("remoteSiteId", ""))
            record = _link(site_id, peer, link, names)
            views = pairs.setdefault(tuple(sorted((site_id, peer))), {})
            seen = views.get(record["name"])
            if seen is None or site_id == own_id or _better(record, seen):
                views[record["name"]] = record
    links = []
    for views in pairs.values():
        named = [view for name, view in views.items() if name != UNKNOWN]
        links += named or list(views.values())
    return links


def _link(site_id: str, peer: str, link: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    def name_of(sid: str) -> str:
        fallback = str(link.get("remoteSiteName") or "") if sid == peer else ""
        return names.get(sid) or fallback or UNKNOWN

    direction = str(link.get("direction") or "")
    # Shown from the dialing side when that is known: an incoming link is flipped.
    dialer, accepter = (peer, site_id) if direction == "incoming" else (site_id, peer)
    if direction not in ("outgoing", "incoming"):  # unknown: the same order from every site
        dialer, accepter = sorted((site_id, peer), key=lambda sid: (name_of(sid), sid))
    record: dict[str, Any] = {
        "name": str(link.get("name") or UNKNOWN),
        "fromSite": name_of(dialer),
        "toSite": name_of(accepter),
        # "outgoing": fromSite dialed toSite; "-": not known here which side dialed.
        "direction": "outgoing" if direction in ("outgoing", "incoming") else UNKNOWN,
        "cost": link["cost"] if isinstance(link.get("cost"), int) else UNKNOWN,
        "state": "up" if link.get("operational") else "down",
    }
    if isinstance(link.get("rttSeconds"), (int, float)):
        record["rttSeconds"] = link["rttSeconds"]
    return record


def _better(new: dict[str, Any], held: dict[str, Any]) -> bool:
    """Between two views of one link, the one that knows more."""
    def known(record: dict[str, Any]) -> int:
        return sum(1 for v in record.values() if v != UNKNOWN)
    return known(new) > known(held)


def _by_site(entry: dict[str, str]) -> tuple[str, str]:
    return entry["site"], entry["name"]
