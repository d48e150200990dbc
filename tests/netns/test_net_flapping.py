"""A flapping wire: west cut off and back, again and again.

Two kinds of flaps: long cuts (longer than the heartbeat's bound: the link goes down
and must come back each time) and short ones (a couple of seconds: TCP retransmits
across them and the link should just stay up). The tests run two long and five short
cycles (~1 minute with setup); SKUPPER_NETNS_LONG=1 runs four long and fifteen short
(the issue's full minute of flapping each); bench/bench_wan.py --flap measures it.
Checked at the end: one link per side, the story in link status and the daemons'
logs (one "down" and one "operational" per long cut), log lines and memory bounded.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from hosts import Network
from sites import (
    HostSkupper,
    expose,
    incoming_ready,
    link_state,
    linked_pair,
    outgoing_ready,
    rows,
)

from tests_support import wait_for

LONG = os.environ.get("SKUPPER_NETNS_LONG") == "1"
LONG_CUTS, SHORT_CUTS = (4, 15) if LONG else (2, 5)
SHORT_CUT_SECONDS = 2.0
ECHO, LISTEN = 7701, 7702
# Per long cut: at most this many new log lines at a site (down, redial, up, ...).
LOG_LINES_PER_CUT = 12
RSS_GROWTH_KIB = 16 * 1024


def rss_kib(pid: int | None) -> int:
    assert pid is not None
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def heartbeat_downs(site: HostSkupper, name: str) -> int:
    """Lines saying this link was closed because its peer went silent."""
    return sum(1 for line in site.log().splitlines()
               if name in line and "no heartbeat from the remote site" in line)


def test_links_recover_from_every_flap_without_duplicates_or_growth(
    network: Network, site_at: Callable[..., HostSkupper], tmp_path: Path,
) -> None:
    west_host, east_host, west, east, name = linked_pair(network, site_at, tmp_path)
    west_host.serve("serve-echo", "127.0.0.1", str(ECHO))
    expose(west, east, "echo", ECHO, LISTEN)
    east_host.peer("rtt", "127.0.0.1", str(LISTEN), "5")
    sites = {"west": west, "east": east}
    rss = {label: rss_kib(site.daemon_pid()) for label, site in sites.items()}
    lines = {label: len(site.log().splitlines()) for label, site in sites.items()}
    downs = {label: heartbeat_downs(site, name) for label, site in sites.items()}

    for _ in range(LONG_CUTS):
        west_host.partition()
        cut = time.monotonic()
        wait_for("east to see the cut", lambda: not outgoing_ready(east, name), 20, 0.2)
        wait_for("west to see the cut", lambda: not incoming_ready(west, name), 20, 0.2)
        assert time.monotonic() - cut <= 15 + 2  # the heartbeat's bound, and the polling
        west_host.heal()
        healed = time.monotonic()
        wait_for("east's link back", lambda: outgoing_ready(east, name), 15, 0.1)
        assert time.monotonic() - healed <= 5 + 1, time.monotonic() - healed
        wait_for("west sees it back", lambda: incoming_ready(west, name), 10, 0.2)
        east_host.peer("rtt", "127.0.0.1", str(LISTEN), "3")  # and it carries traffic

    for _ in range(SHORT_CUTS):
        west_host.partition()
        time.sleep(SHORT_CUT_SECONDS)
        west_host.heal()
        time.sleep(SHORT_CUT_SECONDS)
    # Short cuts are below the heartbeat's bound: TCP rides them out, the link stays.
    assert outgoing_ready(east, name), link_state(east, name)
    east_host.peer("rtt", "127.0.0.1", str(LISTEN), "3")

    # One link per side, none duplicated or left behind.
    assert [r["NAME"] for r in rows(east)] == [name], rows(east)
    assert [(r["NAME"], r["STATUS"]) for r in rows(west)] == [(name, "Ready")], rows(west)
    # The story, once per long cut: the heartbeat gave up, at both ends.
    for label, site in sites.items():
        log = site.log()
        assert heartbeat_downs(site, name) - downs[label] == LONG_CUTS, log[-4000:]
        added = len(log.splitlines()) - lines[label]
        assert added <= LOG_LINES_PER_CUT * LONG_CUTS + 5, log[-4000:]
        assert rss_kib(site.daemon_pid()) - rss[label] <= RSS_GROWTH_KIB
    assert east.log().count(f"link {name} to west") >= LONG_CUTS + 1
