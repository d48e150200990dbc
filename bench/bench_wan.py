"""Service traffic over a slow, lossy WAN: the link beside bare TCP on the same wire.

Two hosts (network namespaces, tests/netns/hosts.py) behind a router namespace; the
router holds every packet to and from east for ``--delay-ms`` (25: a 50 ms round trip)
and drops ``--loss`` of them (0.01 each way), with tests/netns/nfq_wire.py on an
NFQUEUE (this kernel has no netem). west runs a checksumming sink server and an echo
server on 127.0.0.1 and on its wire address; east redeemed west's token, so one link
crosses the wire, and east has listeners for both servers. Alternating, so drift
hits both alike:

- bare: east's client straight to west's sink over the wire (one TCP connection);
- link: east's client to east's listener (loopback), through the link, west's
  connector to the sink on west's loopback.

Those are fresh connections, one per transfer, as a client sees them: the bare one
starts in slow start, the link's wire connection is already warm. So the same is
also measured over one warm connection each (transfers 2..N of one connection).

Each transfer is ``--mib`` MiB of seeded random bytes, checked by SHA-256 at the
sink; throughput counts from connect to the sink's answer. Round trips are 64-byte
echoes, bare and through the link. ``--flap`` instead cuts west off for
``--down`` s and back for ``--up`` s, ``--cycles`` times (default: a minute), and
reports how long each cycle took to be noticed and healed, the log lines, and the
daemons' memory.

Root only (namespaces, iptables). Run: ``.venv/bin/python bench/bench_wan.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "netns")]

# The test suite's helpers (tests/ is not a package mypy checks with bench/).
from hosts import (  # type: ignore[import-not-found]  # noqa: E402
    Host,
    Network,
    tools_missing,
)
from sites import (  # type: ignore[import-not-found]  # noqa: E402
    HostSkupper,
    expose,
    link,
    link_state,
    outgoing_ready,
)

from tests_support import hermetic_env, wait_for  # type: ignore[import-not-found]  # noqa: E402

SINK, ECHO, LINK_SINK, LINK_ECHO = 7501, 7502, 7503, 7504
FRAMED, LINK_FRAMED = 7505, 7506


def site(host: Host, name: str, home: Path, link_access: bool) -> HostSkupper:
    home.mkdir()
    env = hermetic_env(home)
    env["SKUPPER_LINK_ACCESS_HOST"] = host.address
    runner = HostSkupper(home=home, env=env, host=host)
    runner.run("site", "create", name, *(["--enable-link-access"] if link_access else []))
    return runner


def rss_kib(pid: int | None) -> int:
    if pid is None:
        return 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def throughput(east: Host, host: str, port: int, mib: int, seed: int) -> float:
    out = json.loads(east.peer("send", host, str(port), str(mib << 20), str(seed), timeout=600))
    return float(out["mb_per_s"])


def rtt(east: Host, host: str, port: int, count: int) -> dict[str, float]:
    return dict(json.loads(east.peer("rtt", host, str(port), str(count), timeout=300)))


def _warm(east: Host, host: str, port: int, mib: int, count: int) -> list[float]:
    out = json.loads(east.peer("send-framed", host, str(port), str(mib << 20), str(count),
                               timeout=900))
    return [float(rate) for rate in out["mb_per_s"][1:]]


def measure(args: argparse.Namespace, net: Network, west_host: Host, east_host: Host) -> None:
    west_host.serve("serve-sink", west_host.address, str(SINK))
    west_host.serve("serve-echo", west_host.address, str(ECHO))
    west_host.serve("serve-sink", "127.0.0.1", str(SINK))
    west_host.serve("serve-echo", "127.0.0.1", str(ECHO))
    west_host.serve("serve-framed", west_host.address, str(FRAMED))
    west_host.serve("serve-framed", "127.0.0.1", str(FRAMED))
    bare: list[float] = []
    through: list[float] = []
    for run in range(args.runs):
        bare.append(throughput(east_host, west_host.address, SINK, args.mib, run))
        through.append(throughput(east_host, "127.0.0.1", LINK_SINK, args.mib, run))
        print(f"run {run + 1}: bare {bare[-1]:.1f} MB/s, link {through[-1]:.1f} MB/s",
              file=sys.stderr)
    # Warm: transfers 2..N over one TCP connection each (its window already open), so
    # the bare figure is not held back by slow start where the link's is not.
    warm_count = args.runs + 1
    warm_bare = _warm(east_host, west_host.address, FRAMED, args.mib, warm_count)
    warm_link = _warm(east_host, "127.0.0.1", LINK_FRAMED, args.mib, warm_count)
    print(f"warm: bare {warm_bare}, link {warm_link}", file=sys.stderr)
    bare_rtt = rtt(east_host, west_host.address, ECHO, args.rtt_count)
    link_rtt = rtt(east_host, "127.0.0.1", LINK_ECHO, args.rtt_count)
    east_host.unshape()
    stats = json.loads((net.workdir / f"{east_host.name}.wire.json").read_text())
    b, t = statistics.median(bare), statistics.median(through)
    print(f"\n| figure (RTT {2 * args.delay_ms:g} ms, loss {args.loss:.0%} each way) | "
          "bare TCP | through the link | ratio |")
    print("|---|---|---|---|")
    print(f"| throughput, {args.mib} MiB x {args.runs}, median | {b:.1f} MB/s "
          f"(min {min(bare):.1f}, max {max(bare):.1f}) | {t:.1f} MB/s (min {min(through):.1f}, "
          f"max {max(through):.1f}) | {t / b:.0%} |")
    wb, wl = statistics.median(warm_bare), statistics.median(warm_link)
    print(f"| throughput, one warm connection, {args.mib} MiB x {warm_count - 1}, median | "
          f"{wb:.1f} MB/s | {wl:.1f} MB/s | {wl / wb:.0%} |")
    print(f"| round trip, 64 B x {args.rtt_count}, median | {bare_rtt['median_ms']:.1f} ms | "
          f"{link_rtt['median_ms']:.1f} ms | +{link_rtt['median_ms'] - bare_rtt['median_ms']:.1f}"
          " ms |")
    print(f"| round trip p90 | {bare_rtt['p90_ms']:.1f} ms | {link_rtt['p90_ms']:.1f} ms | |")
    print(f"\nwire: {stats['packets']} packets, {stats['dropped']} dropped "
          f"({stats['dropped'] / max(1, stats['packets']):.2%}), most held at once "
          f"{stats['max_held']}")


def flap(args: argparse.Namespace, west_host: Host, west: HostSkupper, east: HostSkupper,
         name: str) -> None:
    rss_before = (rss_kib(west.daemon_pid()), rss_kib(east.daemon_pid()))
    lines_before = (len(west.log().splitlines()), len(east.log().splitlines()))
    for cycle in range(args.cycles):
        west_host.partition()
        cut = time.monotonic()
        noticed = None
        while time.monotonic() - cut < args.down:
            if noticed is None and link_state(east, name).get("STATUS") != "Ready":
                noticed = time.monotonic() - cut
            time.sleep(0.2)
        west_host.heal()
        healed = time.monotonic()
        wait_for("the link back", lambda: outgoing_ready(east, name), 30, 0.1)
        back = time.monotonic() - healed
        while time.monotonic() - healed < args.up:
            time.sleep(0.2)
        seen = "stayed up" if noticed is None else f"down after {noticed:.1f} s"
        print(f"cycle {cycle + 1}: {seen}, back {back:.1f} s after the heal", file=sys.stderr)
    rss_after = (rss_kib(west.daemon_pid()), rss_kib(east.daemon_pid()))
    lines = (len(west.log().splitlines()) - lines_before[0],
             len(east.log().splitlines()) - lines_before[1])
    print(f"\nflapping: {args.cycles} cycles of {args.down:g} s down / {args.up:g} s up")
    print(f"log lines added: west {lines[0]}, east {lines[1]}")
    print(f"RSS KiB before -> after: west {rss_before[0]} -> {rss_after[0]}, "
          f"east {rss_before[1]} -> {rss_after[1]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay-ms", type=float, default=25.0, help="each way")
    parser.add_argument("--loss", type=float, default=0.01, help="each way, 0..1")
    parser.add_argument("--mib", type=int, default=32)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rtt-count", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--flap", action="store_true")
    parser.add_argument("--cycles", type=int, default=4)
    parser.add_argument("--down", type=float, default=12.0)
    parser.add_argument("--up", type=float, default=4.0)
    args = parser.parse_args()
    missing = tools_missing()
    if missing:
        print(f"bench_wan: {missing}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-wan-") as tmp:
        workdir = Path(tmp)
        net = Network(workdir=workdir, subnet=60 + os.getpid() % 4)
        sites: list[HostSkupper] = []
        try:
            west_host, east_host = net.add_host("west"), net.add_host("east")
            if not args.flap:
                # Shaped from the start, so the link's TCP connection is born on the slow
                # wire, as across a real WAN (a connection that measured a 0.05 ms round
                # trip first keeps BBR's min-RTT for 10 s and crawls).
                seconds = args.runs * 2 * (args.mib / 2 + 10) + 600
                east_host.shape(args.delay_ms, args.loss, seconds, seed=args.seed)
            west = site(west_host, "west", workdir / "west", True)
            sites.append(west)
            east = site(east_host, "east", workdir / "east", False)
            sites.append(east)
            name = link(west, east, workdir)
            expose(west, east, "sink", SINK, LINK_SINK)
            expose(west, east, "echo", ECHO, LINK_ECHO)
            expose(west, east, "framed", FRAMED, LINK_FRAMED)
            if args.flap:
                flap(args, west_host, west, east, name)
            else:
                measure(args, net, west_host, east_host)
        finally:
            for runner in sites:
                runner.kill_daemons()
            net.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
