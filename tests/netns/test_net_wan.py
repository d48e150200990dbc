"""Slow and lossy wires: 50 ms round trip with 1% loss, and a wire dropping 30%.

The router holds every packet to and from east (tests/netns/nfq_wire.py on an
NFQUEUE) and drops some. Throughput is the bench's business (bench/bench_wan.py: the
link beside bare TCP on the same wire); these tests check what must hold on any
machine: bytes intact and in order, the heartbeat patient with a slow but alive link,
the link's added round trip small, and a very lossy wire survived or recovered from.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from hosts import Host, Network
from sites import HostSkupper, expose, link, link_state, outgoing_ready

from tests_support import wait_for

MIB = 1024 * 1024
SINK, ECHO, LINK_SINK, LINK_ECHO = 7601, 7602, 7603, 7604
# What the link may add to a round trip over the wire (the bench measures ~1-3 ms on
# a busy 2-core machine); generous, as tests must not depend on tight timings.
ADDED_RTT_BOUND_MS = 15.0


def two_sites(network: Network, site_at: Callable[..., HostSkupper], tmp_path: Path,
              delay_ms: float, loss: float, seconds: float
              ) -> tuple[Host, Host, HostSkupper, HostSkupper, str]:
    west_host, east_host = network.add_host("west"), network.add_host("east")
    # Shaped before the link exists: its TCP connection is born on the slow wire.
    east_host.shape(delay_ms, loss, seconds)
    west = site_at(west_host, "west")
    east = site_at(east_host, "east", link_access=False)
    name = link(west, east, tmp_path)
    for server, port in (("serve-sink", SINK), ("serve-echo", ECHO)):
        west_host.serve(server, "127.0.0.1", str(port))
        west_host.serve(server, west_host.address, str(port))
    expose(west, east, "sink", SINK, LINK_SINK)
    expose(west, east, "echo", ECHO, LINK_ECHO)
    return west_host, east_host, west, east, name


def median_rtt(host: Host, address: str, port: int) -> float:
    return float(json.loads(host.peer("rtt", address, str(port), "40"))["median_ms"])


def test_a_50ms_lossy_wire_carries_16_mib_intact_and_the_link_stays_up(
    network: Network, site_at: Callable[..., HostSkupper], tmp_path: Path,
) -> None:
    west_host, east_host, _west, east, name = two_sites(
        network, site_at, tmp_path, delay_ms=25, loss=0.01, seconds=240)

    # 16 MiB of seeded random bytes through the link, SHA-256 checked at west's sink
    # (peer.py fails on any corrupted or reordered byte).
    sent = json.loads(east_host.peer("send", "127.0.0.1", str(LINK_SINK), str(16 * MIB), "7"))
    assert sent["bytes"] == 16 * MIB

    # The wire's round trip, and the link's on top of it.
    bare = median_rtt(east_host, west_host.address, ECHO)
    through = median_rtt(east_host, "127.0.0.1", LINK_ECHO)
    assert 45 <= bare <= 70, bare  # the wire is shaped as asked
    assert through - bare <= ADDED_RTT_BOUND_MS, (bare, through)

    # Slow but alive: the heartbeat never gave up on it.
    assert outgoing_ready(east, name), link_state(east, name)
    assert "is down" not in east.log(), east.log()[-3000:]
    stats_file = network.workdir / f"{east_host.name}.wire.json"
    east_host.unshape()
    stats = json.loads(stats_file.read_text())
    assert stats["dropped"] > 0 and 0.005 < stats["dropped"] / stats["packets"] < 0.02, stats


def test_a_wire_dropping_30_percent_for_20_s_corrupts_nothing_and_the_link_recovers(
    network: Network, site_at: Callable[..., HostSkupper], tmp_path: Path,
) -> None:
    _west_host, east_host, _west, east, name = two_sites(
        network, site_at, tmp_path, delay_ms=5, loss=0.0, seconds=240)
    east_host.shape(5, 0.30, 20)
    started = time.monotonic()
    # Transfers under way through the link while the wire is at its worst.
    logs = [tmp_path / f"send-{i}.log" for i in range(3)]
    senders = [east_host.serve("send", "127.0.0.1", str(LINK_SINK), str(256 * 1024),
                               str(i), log=log) for i, log in enumerate(logs)]
    wait_for("the lossy period to end", lambda: time.monotonic() - started > 21, 30, 0.5)
    east_host.unshape()

    # The link stayed up or came back by itself.
    wait_for("the link up after the loss", lambda: outgoing_ready(east, name), 30, 0.5)
    for sender in senders:
        wait_for("the transfers to end", lambda s=sender: s.poll() is not None, 120, 0.5)
    outcomes = [log.read_text() for log in logs]
    for outcome in outcomes:
        # Each transfer arrived whole and in order, or was reset: never corrupted.
        assert "corrupted" not in outcome, outcome
    if "is down" not in east.log():
        # The link never dropped, so every transfer must have arrived.
        assert all('"bytes": 262144' in o for o in outcomes), outcomes
    # Afterwards, new connections carry data intact.
    sent = json.loads(east_host.peer("send", "127.0.0.1", str(LINK_SINK), str(4 * MIB), "9"))
    assert sent["bytes"] == 4 * MIB
