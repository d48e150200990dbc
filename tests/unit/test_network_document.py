"""network_document: the Site's network as sites, links (each once) and services."""

from __future__ import annotations

from typing import Any

from skupper.resources.network import network_document

# west dialed east (link "east-to-west" is east's outgoing link); c is behind east.
WEST: dict[str, Any] = {
    "id": "w", "name": "west", "namespace": "west", "platform": "systemd", "version": "0.1.0",
    "links": [{"name": "east-to-west", "remoteSiteId": "e", "remoteSiteName": "east",
               "operational": True, "direction": "incoming", "cost": 2}],
    "services": [{"routingKey": "backend", "connectors": ["backend"]}],
}
EAST: dict[str, Any] = {
    "id": "e", "name": "east", "namespace": "east",
    "links": [{"remoteSiteId": "w", "remoteSiteName": "west", "operational": True},
              {"remoteSiteId": "c", "remoteSiteName": "c", "operational": True}],
    "services": [{"routingKey": "backend", "listeners": ["backend", "backend-2"]}],
}
C: dict[str, Any] = {"id": "c", "name": "c", "links": [
    {"remoteSiteId": "e", "remoteSiteName": "east", "operational": True}]}


def test_sites_links_and_services_from_west() -> None:
    doc = network_document([WEST, EAST, C], "w")
    assert [s["name"] for s in doc["sites"]] == ["west", "c", "east"]
    assert doc["sites"][0] == {"id": "w", "name": "west", "namespace": "west",
                               "platform": "systemd", "version": "0.1.0"}
    assert doc["sites"][1]["platform"] == "-"
    pairs = sorted((lk["fromSite"], lk["toSite"]) for lk in doc["links"])
    assert pairs == [("c", "east"), ("east", "west")]  # each link once
    named = next(lk for lk in doc["links"] if lk["name"] == "east-to-west")
    assert named == {"name": "east-to-west", "fromSite": "east", "toSite": "west",
                     "direction": "outgoing", "cost": 2, "state": "up"}
    (service,) = doc["services"]
    assert service["routingKey"] == "backend"
    assert service["connectors"] == [{"site": "west", "name": "backend"}]
    assert service["listeners"] == [{"site": "east", "name": "backend"},
                                    {"site": "east", "name": "backend-2"}]


def test_every_site_sees_the_same_sites_and_services() -> None:
    from_west = network_document([WEST, EAST, C], "w")
    from_c = network_document([C, EAST, WEST], "c")
    assert sorted(s["id"] for s in from_west["sites"]) == sorted(s["id"] for s in from_c["sites"])
    assert from_west["services"] == from_c["services"]
    assert len(from_c["links"]) == 2


def test_advertised_links_say_who_dialed_and_the_cost() -> None:
    links = [{"from": "e", "to": "w", "cost": 2, "dialed": True, "name": "east-to-west"},
             {"from": "c", "to": "e", "cost": 1, "dialed": False}]
    west = {**WEST, "links": [*WEST["links"], {"name": "to-gone", "remoteSiteId": "g",
                                               "remoteSiteName": "gone", "operational": False}]}
    doc = network_document([west, EAST, C], "w", links)
    assert doc["links"] == [
        {"name": "-", "fromSite": "c", "toSite": "east", "direction": "-", "cost": 1,
         "state": "up"},
        {"name": "east-to-west", "fromSite": "east", "toSite": "west", "direction": "outgoing",
         "cost": 2, "state": "up"},
        {"name": "to-gone", "fromSite": "west", "toSite": "gone", "direction": "outgoing",
         "cost": "-", "state": "down"},
    ]
    assert network_document([C, EAST, WEST], "c", links)["links"] == doc["links"][:2]
