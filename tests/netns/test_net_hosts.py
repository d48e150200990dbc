"""Sites on separate hosts: issue at one, redeem at another, traffic over the routed wire.

Each site is a host of its own (a network namespace with its own address, data home
and daemon) behind a WAN router; the sites advertise their host's address, not
loopback. The CLI, the daemons, the servers and the clients all run inside the hosts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from hosts import Host, Network
from sites import HostSkupper, expose, link, linked_pair, outgoing_ready, rows

from tests_support import one_error_line, wait_for

MIB = 1024 * 1024


def listening(host: Host) -> set[str]:
    """The host's listening TCP sockets, as "address:port"."""
    out = host.run("ss", "-ltnH")
    return {line.split()[3] for line in out.splitlines() if line.strip()}


def site_status(site: HostSkupper) -> dict[str, object]:
    return dict(json.loads(site.run("site", "status", "-o", "json").stdout))


def san_addresses(site: HostSkupper, secret: str) -> list[str]:
    pem = (site.namespace_dir() / "secrets" / secret / "tls.crt").read_bytes()
    sans = x509.load_pem_x509_certificate(pem).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    return [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]


def transfer(client: Host, port: int, size: int, seed: int) -> dict[str, float]:
    """``size`` seeded bytes from ``client`` to 127.0.0.1:port there, checked at the sink."""
    return dict(json.loads(client.peer("send", "127.0.0.1", str(port), str(size), str(seed))))


def test_two_hosts_link_over_the_wire_with_traffic_both_ways(
    network: Network, site_at: Callable[..., HostSkupper], tmp_path: Path,
) -> None:
    west_host, east_host = network.add_host("west"), network.add_host("east")
    west = site_at(west_host, "west")
    east = site_at(east_host, "east")

    # Advertised: the host's own address. Bound: that address only, not every interface.
    endpoints = site_status(west)["status"]["endpoints"]  # type: ignore[index]
    assert {e["host"] for e in endpoints} == {west_host.address}, endpoints
    ports = {e["name"]: int(e["port"]) for e in endpoints}
    bound = listening(west_host)
    assert f"{west_host.address}:{ports['inter-router']}" in bound, bound
    assert not any(a.startswith(("0.0.0.0:", "*:", "[::]:")) for a in bound), bound
    # The certificates name the advertised address (an IP SAN), so dialers verify it.
    for secret in ("skupper-site-server", "skupper-grant-server"):
        assert san_addresses(west, secret) == [west_host.address], secret

    # Issued at west, redeemed at east: the grant server and the link cross the wire.
    name = link(west, east, tmp_path)
    (row,) = [r for r in rows(east) if r["NAME"] == name]
    assert row["DIRECTION"] == "outgoing" and row["STATUS"] == "Ready", row
    assert row["REMOTE SITE"] == "west"
    (incoming,) = [r for r in rows(west) if r["NAME"] == name]
    assert incoming["DIRECTION"] == "incoming" and incoming["REMOTE SITE"] == "east"

    # west -> east: a server at west on loopback, its clients at east.
    west_host.serve("serve-sink", "127.0.0.1", "7301")
    expose(west, east, "west-sink", 7301, 7302)
    assert transfer(east_host, 7302, 4 * MIB, seed=1)["bytes"] == 4 * MIB
    # east -> west, over the same link: a server at east on east's own (non-loopback)
    # address, so a connector reaches a server on its host by that host's address.
    east_host.serve("serve-sink", east_host.address, "7303")
    east.run("connector", "create", "east-sink", "7303", "--host", east_host.address)
    west.run("listener", "create", "east-sink", "7304", "--wait", "ready", "--timeout", "30s")
    assert transfer(west_host, 7304, 4 * MIB, seed=2)["bytes"] == 4 * MIB


def test_three_hosts_route_through_the_middle_one(
    network: Network, site_at: Callable[..., HostSkupper], tmp_path: Path,
) -> None:
    hosts = [network.add_host(label) for label in ("a", "b", "c")]
    a, b, c = (site_at(h, f"site-{label}") for h, label in zip(hosts, "abc", strict=True))
    link(b, a, tmp_path)
    link(b, c, tmp_path)
    wait_for("c to see all three sites",
             lambda: site_status(c)["status"].get("sitesInNetwork") == 3,  # type: ignore[attr-defined]
             20)
    hosts[0].serve("serve-sink", "127.0.0.1", "7401")
    expose(a, c, "far", 7401, 7402)
    # From c to a: two links, each across the router, through b's daemon.
    assert transfer(hosts[2], 7402, 4 * MIB, seed=3)["bytes"] == 4 * MIB


def test_bind_host_all_interfaces_on_request_and_a_bad_one_is_one_line(
    network: Network, site_at: Callable[..., HostSkupper],
) -> None:
    host = network.add_host("west")
    wide = site_at(host, "west", env={"SKUPPER_BIND_HOST": "0.0.0.0"})
    ports = {e["name"]: int(e["port"])
             for e in site_status(wide)["status"]["endpoints"]}  # type: ignore[index]
    assert f"0.0.0.0:{ports['inter-router']}" in listening(host)
    wide.run("site", "delete")

    other = network.add_host("east")
    bad = HostSkupper(home=wide.home, env={**wide.env, "SKUPPER_BIND_HOST": "10.231.255.77"},
                      host=other)
    done = bad.run("site", "create", "east", "--enable-link-access", "--timeout", "10s",
                   check=False)
    bad.kill_daemons()
    line = one_error_line(done)
    assert "SKUPPER_BIND_HOST=10.231.255.77" in line, line
    assert "not an address of this host. Set it to one, or unset it" in line, line


def test_a_link_to_a_host_that_is_down_says_why(
    network: Network, site_at: Callable[..., HostSkupper], tmp_path: Path,
) -> None:
    west_host, _east_host, _west, east, name = linked_pair(network, site_at, tmp_path)
    west_host.partition()
    # While west is unreachable, east's redials time out and say where they went.
    wait_for("east to say it cannot reach west",
             lambda: any(r["NAME"] == name and "no answer from" in r["MESSAGE"]
                         and west_host.address in r["MESSAGE"] for r in rows(east)), 30, 0.5)
    west_host.heal()
    wait_for("the link back", lambda: outgoing_ready(east, name), 10)


def test_stopping_a_site_whose_peer_is_cut_off_does_not_wait_for_it(
    network: Network, site_at: Callable[..., HostSkupper], tmp_path: Path,
) -> None:
    west_host, east_host = network.add_host("west"), network.add_host("east")
    west = site_at(west_host, "west")
    east = site_at(east_host, "east", link_access=False)
    link(west, east, tmp_path)
    east_host.partition()  # east is gone silent; west does not know yet
    for site in (west, east):
        started = time.monotonic()
        site.run("system", "stop")
        took = time.monotonic() - started
        # Links are closed with a 1 s grace for the goodbye, then aborted.
        assert took < 6, (site.host.name if site.host else "?", took)
