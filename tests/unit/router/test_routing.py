"""The pure network map: adverts, shortest paths, reachability and load sharing."""

from __future__ import annotations

import pytest

from skupper.router.routing import (
    MAX_SITES,
    AdError,
    RoutingTable,
    Service,
    SiteAd,
    services_of,
)

BACKEND = {"backend": Service(connectors=("backend",))}


def ad(site: str, seq: int = 1, links: dict[str, int] | None = None,
       services: dict[str, Service] | None = None) -> SiteAd:
    return SiteAd(site, site.upper(), seq, "ns", links or {}, services or {})


def table(local: str, *ads: SiteAd, local_links: dict[str, int] | None = None,
          local_services: dict[str, Service] | None = None) -> RoutingTable:
    t = RoutingTable(local)
    t.set_local(ad(local, 1, local_links, local_services))
    for a in ads:
        t.update(a)
    return t


def line() -> RoutingTable:
    """a - b - c, seen from a; c has the backend connector."""
    return table("a", ad("b", links={"a": 1, "c": 1}),
                 ad("c", links={"b": 1}, services=BACKEND), local_links={"b": 1})


def test_a_line_routes_through_the_middle() -> None:
    t = line()
    assert t.reachable == ["a", "b", "c"]
    route = t.route("c")
    assert route is not None and (route.next_hop, route.cost) == ("b", 2)
    assert t.destinations("backend") == ["c"]
    chosen = t.choose("backend")
    assert chosen is not None and chosen.site_id == "c" and chosen.next_hop == "b"


def test_the_path_lists_every_site_crossed() -> None:
    t = line()
    assert t.path("c") == ["a", "b", "c"]
    assert t.path("a") == ["a"]
    assert t.path("nowhere") == []
    # The cheaper detour wins over a costly direct link, and the path says so.
    t = table("a", ad("b", links={"a": 1, "c": 1}), ad("c", links={"a": 5, "b": 1}),
              local_links={"b": 1, "c": 1})
    assert t.path("c") == ["a", "b", "c"]


def test_a_link_counts_only_when_both_ends_advertise_it() -> None:
    # b no longer lists c (its link dropped): c's stale claim must not make it reachable.
    t = table("a", ad("b", links={"a": 1}), ad("c", links={"b": 1}, services=BACKEND),
              local_links={"b": 1})
    assert t.reachable == ["a", "b"]
    assert t.choose("backend") is None
    assert not t.has_connector("backend")


def test_the_cheapest_path_wins_and_cost_is_the_larger_of_both_ends() -> None:
    # a-c direct at cost 5 (as c says; a says 1), or a-b-c at 1+1.
    t = table("a", ad("b", links={"a": 1, "c": 1}), ad("c", links={"a": 5, "b": 1}),
              local_links={"b": 1, "c": 1})
    route = t.route("c")
    assert route is not None and (route.next_hop, route.cost) == ("b", 2)
    # Once b goes away, the direct link is the way.
    t.update(ad("b", seq=2, links={"c": 1}))
    route = t.route("c")
    assert route is not None and (route.next_hop, route.cost) == ("c", 5)


def test_newer_adverts_win_and_older_ones_are_ignored() -> None:
    t = line()
    assert not t.update(ad("c", seq=1, links={"b": 1}))  # same sequence: no change
    assert t.update(ad("c", seq=5, links={"b": 1}))  # withdraws the connector
    assert t.choose("backend") is None
    assert not t.update(ad("c", seq=4, links={"b": 1}, services=BACKEND))  # stale
    assert t.choose("backend") is None


def test_our_own_advert_is_never_taken_from_a_peer() -> None:
    t = line()
    assert not t.update(ad("a", seq=99, links={}))
    assert t.reachable == ["a", "b", "c"]


def test_an_advert_that_arrives_before_its_path_is_kept_for_later() -> None:
    t = table("a", local_links={"b": 1})
    t.update(ad("c", links={"b": 1}, services=BACKEND))  # b's advert is not there yet
    assert t.reachable == ["a"]
    t.update(ad("b", links={"a": 1, "c": 1}))
    assert t.reachable == ["a", "b", "c"]
    assert t.has_connector("backend")


def test_several_connectors_share_the_load() -> None:
    t = table("a", ad("b", links={"a": 1}, services=BACKEND),
              ad("c", links={"a": 1}, services=BACKEND), local_links={"b": 1, "c": 1})
    # Sequential connections (each closed before the next) alternate.
    picks = []
    for _ in range(6):
        route = t.choose("backend")
        assert route is not None
        picks.append(route.site_id)
        t.opened(route.site_id)
        t.closed(route.site_id)
    assert picks.count("b") == picks.count("c") == 3
    # Concurrent connections go to the least loaded.
    t.opened("b")
    t.opened("b")
    route = t.choose("backend")
    assert route is not None and route.site_id == "c"


def test_a_local_connector_is_a_destination_at_cost_zero() -> None:
    t = table("a", local_services=BACKEND)
    route = t.choose("backend")
    assert route is not None and (route.site_id, route.next_hop, route.cost) == ("a", "", 0)


def test_listeners_and_keys_network_wide() -> None:
    t = table("a", ad("b", links={"a": 1},
                      services={"db": Service(listeners=("db",)),
                                "web": Service(connectors=("web-1", "web-2"))}),
              local_links={"b": 1})
    assert t.has_listener("db") and not t.has_listener("web")
    assert t.keys_with_connectors() == {"web"}


def test_services_of_groups_by_key() -> None:
    assert services_of([("x", "k"), ("y", "k")], [("l", "k"), ("m", "n")]) == {
        "k": Service(("x", "y"), ("l",)), "n": Service((), ("m",))}


def test_the_table_is_bounded() -> None:
    t = table("a")
    for i in range(MAX_SITES + 10):
        t.update(ad(f"s{i}"))
    assert len(t.ads) <= MAX_SITES


A_ID = "11111111-1111-4111-8111-111111111111"
B_ID = "2b2b2b2b-2222-4222-8222-22222222222b"


def test_wire_round_trip() -> None:
    original = SiteAd(B_ID, "b", 7, "ns", {A_ID: 3}, {"k": Service(("c1",), ("l1",))})
    assert SiteAd.from_wire(original.to_wire()) == original


def _wire(**changes: object) -> dict[str, object]:
    doc: dict[str, object] = {"id": B_ID, "name": "b", "ns": "ns", "seq": 1,
                              "links": {A_ID: 1}, "services": {"k": {"c": ["c1"]}}}
    doc.update(changes)
    return doc


@pytest.mark.parametrize("doc", [
    _wire(id="b"),  # not a UUID
    _wire(id=B_ID.upper()),  # not the canonical form
    _wire(name="east\r\nINFO forged"),
    _wire(name="\x1b[2Jeast"),
    _wire(name="B"),
    _wire(ns="a b"),
    _wire(seq=2**63),
    _wire(seq=2**200),
    _wire(links={A_ID: 1_000_001}),
    _wire(links={"a": 1}),
    _wire(services={"k\n": {"c": ["c1"]}}),
    _wire(services={"k": {"c": ["c1\x1b[31m"]}}),
    _wire(services={"": {"c": ["c1"]}}),
])
def test_adverts_with_unsafe_names_or_numbers_out_of_range_are_refused(doc: object) -> None:
    with pytest.raises(AdError):
        SiteAd.from_wire(doc)


def test_an_advert_at_the_bounds_is_taken() -> None:
    doc = _wire(seq=2**63 - 1, links={A_ID: 1_000_000}, name="b" * 253)
    assert SiteAd.from_wire(doc).links == {A_ID: 1_000_000}


@pytest.mark.parametrize("doc", [
    None, [], {"id": "b"}, {"id": "b", "name": "B", "seq": -1},
    {"id": "b", "name": "B", "seq": True},
    {"id": "b", "name": "B", "seq": 1, "links": {"a": 0}},
    {"id": "b", "name": "B", "seq": 1, "links": {"a": "1"}},
    {"id": "b", "name": "B", "seq": 1, "links": []},
    {"id": "b", "name": "B", "seq": 1, "services": {"k": {"c": "x"}}},
    {"id": "b" * 300, "name": "B", "seq": 1},
])
def test_malformed_adverts_are_refused(doc: object) -> None:
    with pytest.raises(AdError):
        SiteAd.from_wire(doc)
