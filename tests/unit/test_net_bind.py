"""Where a site listens for links, for each kind of advertised host (base.net)."""

from __future__ import annotations

from skupper.base.net import bind_address_for, is_local_address, is_wildcard


def test_an_override_always_wins() -> None:
    assert bind_address_for("west.example.com", "10.1.2.3") == "10.1.2.3"
    assert bind_address_for("127.0.0.1", "0.0.0.0") == "0.0.0.0"


def test_loopback_stays_on_loopback() -> None:
    assert bind_address_for("127.0.0.1", None) == "127.0.0.1"
    assert bind_address_for("localhost", None) == "127.0.0.1"
    assert bind_address_for("::1", None) == "::1"


def test_a_name_or_an_address_not_of_this_host_listens_everywhere() -> None:
    # A DNS name may point at a NAT or a load balancer: the address dialed is not ours.
    assert bind_address_for("west.example.com", None) == "0.0.0.0"
    assert not is_local_address("192.0.2.10")  # TEST-NET-1: on no machine
    assert bind_address_for("192.0.2.10", None) == "0.0.0.0"
    assert bind_address_for("2001:db8::10", None) == "::"


def test_an_address_of_this_host_is_bound_alone() -> None:
    # 127.0.0.2 is local and loopback; the netns tests show a non-loopback one
    # (tests/netns/test_net_hosts.py).
    assert is_local_address("127.0.0.2")
    assert is_wildcard("0.0.0.0") and is_wildcard("::") and not is_wildcard("10.0.0.1")
