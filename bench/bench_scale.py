"""Benchmark: the scale of one link (issue 14, point 5).

    .venv/bin/python bench/bench_scale.py [--quick] [--connections 1000] [--seconds 10]
        [--idle 5000] [--daemon-nofile 1024] [--loop asyncio|uvloop] [--profile DIR]
        [--keep]

Sites a and b, one link; a listener at a, a connector at b for a selector-based server
(bench/scale_traffic.py, one process: a counting sink and an echo). Two figures:

  concurrent  ``--connections`` connections through the link at once, each sending as
              fast as it can (at most ``--per-connection-mib``) for the whole run; the
              sink snapshots every connection's byte count at the start and at the end
              of a ``--seconds`` window: aggregate MB/s, per-connection MB/s (min, p10,
              p50, p90, max, max/min), each daemon's RSS before, during and after.
              Every connection must complete: after the stop its sink reports the
              bytes it got and they must equal what the client sent.
  idle        ``--idle`` connections held open through the link: RSS growth per
              connection of each daemon, open fds, and that each still echoes a byte.

The daemons are started with the soft open-files limit ``--daemon-nofile`` (1024 by
default, systemd's default soft limit for a service; 0 leaves the bench's own), so the
run shows whether a daemon raises its own limit; the limits the daemons run with are
read from /proc/<pid>/limits and printed. The bench itself raises its soft limit to at
most 20000 (this sandbox's hard limit). ``--loop`` sets SKUPPER_EVENT_LOOP for the
daemons; the loop they really run is read from their memory maps and printed.

Loopback only; every wait has a timeout; every process is stopped by pid at the end.
"""

from __future__ import annotations

import argparse
import json
import resource
import selectors
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import PYTHON, Hermetic, hermetic, machine_info
from profiles import Profiler
from scale_traffic import WAIT_SECONDS, raise_own_limit
from service_sites import event_loop_of, expose, link, open_fds, open_files_limit, rss_kib

TRAFFIC = str(Path(__file__).resolve().parent / "traffic.py")
SCALE_TRAFFIC = str(Path(__file__).resolve().parent / "scale_traffic.py")
WARM_UP_SECONDS = 2.0
ALL_REACHED_SECONDS = 60.0


@contextmanager
def _soft_limit(limit: int) -> Iterator[None]:
    """The bench's soft open-files limit lowered to ``limit`` (0: unchanged) meanwhile, so
    the daemons started meanwhile inherit it, as a service manager would give it them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if limit:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(limit, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# --- the orchestration ----------------------------------------------------------------------


def _line(child: subprocess.Popen[str], seconds: float, what: str) -> str:
    """The child's next stdout line within ``seconds``, else an error naming ``what``
    (at once when the child has ended, with the last line of its stderr)."""
    assert child.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(child.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            if sel.select(timeout=1.0):
                line = child.stdout.readline()
                if line:
                    return line
                break  # end of its output
            if child.poll() is not None:
                break
    finally:
        sel.close()
    status = child.poll()
    said = ""
    if status is not None and child.stderr is not None:
        lines = child.stderr.read().strip().splitlines()
        said = f": {lines[-1][:300]}" if lines else ""
    ended = f"it exited with status {status}{said}" if status is not None else \
        f"no answer within {seconds:.0f} s"
    raise RuntimeError(f"{what}: {ended}")


def _say(child: subprocess.Popen[str], text: str) -> None:
    assert child.stdin is not None
    child.stdin.write(text + "\n")
    child.stdin.flush()


def _spawn(h: Hermetic, argv: list[str]) -> subprocess.Popen[str]:
    child: subprocess.Popen[str] = h.spawn(  # type: ignore[assignment]
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return child


def _daemons(h: Hermetic) -> dict[str, int]:
    return {ns: h.daemon_pid(ns) for ns in ("a", "b")}


def _rss(pids: dict[str, int]) -> dict[str, int]:
    return {ns: rss_kib(pid) for ns, pid in pids.items()}


def _pct(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _concurrent(h: Hermetic, server: subprocess.Popen[str], port: int,
                args: argparse.Namespace) -> dict[str, Any]:
    pids = _daemons(h)
    before = _rss(pids)
    client = _spawn(h, [PYTHON, SCALE_TRAFFIC, "load-client", "--port", str(port),
                        "--count", str(args.connections),
                        "--cap-mib", str(args.per_connection_mib)])
    _line(client, WAIT_SECONDS, f"opening {args.connections} connections")
    _say(client, "go")
    went = time.monotonic()
    time.sleep(WARM_UP_SECONDS)
    # The window starts when every connection has reached the sink (or after a bound).
    while True:
        _say(server, "mark")
        first = json.loads(_line(server, 30, "the sink's first count"))
        if len(first["counts"]) >= args.connections or \
                time.monotonic() - went > ALL_REACHED_SECONDS:
            break
        time.sleep(0.5)
    reached = time.monotonic() - went
    profiler = Profiler(Path(args.profile).resolve()) if args.profile else None
    try:
        if profiler:
            profiler.start(f"scale-{args.connections}", pids)
            _say(server, "mark")  # the window is the profiled time
            first = json.loads(_line(server, 30, "the sink's first count"))
        time.sleep(args.seconds / 2)
        during = _rss(pids)
        fds = {ns: open_fds(pid) for ns, pid in pids.items()}
        time.sleep(args.seconds / 2)
        _say(server, "mark")
        last = json.loads(_line(server, 30, "the sink's second count"))
    finally:
        if profiler:
            profiler.summarise(profiler.stop())
    _say(client, "stop")
    result = json.loads(_line(client, WAIT_SECONDS, "the connections' end"))
    client.wait(30)
    time.sleep(2.0)
    after = _rss(pids)
    window = last["t"] - first["t"]
    rates = sorted((last["counts"].get(cid, n) - n) / window / 1e6
                   for cid, n in first["counts"].items())
    return {"result": result, "sinks_at_start": len(first["counts"]), "reached": reached,
            "aggregate": sum(rates), "rates": rates, "window": window,
            "rss": (before, during, after), "fds": fds}


def _idle(h: Hermetic, port: int, count: int) -> dict[str, Any]:
    pids = _daemons(h)
    before, fds_before = _rss(pids), {ns: open_fds(pid) for ns, pid in pids.items()}
    client = _spawn(h, [PYTHON, TRAFFIC, "client", "--port", str(port), "--test", "idle",
                        "--count", str(count), "--cap", "60"])
    started = time.monotonic()
    _line(client, WAIT_SECONDS, f"holding {count} idle connections")
    opened = time.monotonic() - started
    time.sleep(2.0)
    during = _rss(pids)
    fds = {ns: open_fds(pid) for ns, pid in pids.items()}
    _say(client, "")
    echoed = json.loads(_line(client, WAIT_SECONDS, "the idle connections' echo"))
    client.wait(30)
    return {"echo": echoed, "opened_seconds": opened, "rss": (before, during),
            "fds": (fds_before, fds),
            "per_connection": {ns: (during[ns] - before[ns]) / count for ns in pids}}


def _bench(h: Hermetic, args: argparse.Namespace) -> int:
    work = h.home / "bench"
    work.mkdir(mode=0o700)
    server = _spawn(h, [PYTHON, SCALE_TRAFFIC, "server"])
    ports = json.loads(_line(server, 30, "the server's ports"))
    if args.loop:
        h.env["SKUPPER_EVENT_LOOP"] = args.loop
    with _soft_limit(args.daemon_nofile):
        h.skupper("site", "create", "a", "-n", "a", "--enable-link-access")
        h.skupper("site", "create", "b", "-n", "b")
    h.env.pop("SKUPPER_EVENT_LOOP", None)
    link(h, work, "a", "b")
    listen = {service: expose(h, f"{service}-b", ports[service], "b", "a")
              for service in ("sink", "echo")}
    limits = {ns: open_files_limit(pid) for ns, pid in _daemons(h).items()}
    loops = {ns: event_loop_of(pid) for ns, pid in _daemons(h).items()}
    print("daemons' open-files limits (soft, hard): " + ", ".join(
        f"{ns} {soft}/{hard}" for ns, (soft, hard) in limits.items()), file=sys.stderr)
    failures = []
    concurrent = idle = None
    try:
        concurrent = _concurrent(h, server, listen["sink"], args)
    except RuntimeError as error:
        failures.append(f"concurrent: {error}")
    try:
        idle = _idle(h, listen["echo"], args.idle)
    except RuntimeError as error:
        failures.append(f"idle: {error}")
    _report(args, limits, loops, concurrent, idle, failures, h)
    return 1 if failures else 0


def _ratio(high: float, low: float) -> str:
    """high/low, or "inf" when low got nothing (a starved connection, not a big number)."""
    return f"{high / low:.2f}" if low > 0 else "inf"


def _kib(values: dict[str, int]) -> str:
    return ", ".join(f"{ns} {kib / 1024:.1f} MiB" for ns, kib in values.items())


def _report(args: argparse.Namespace, limits: dict[str, tuple[int, int]],
            loops: dict[str, str],
            concurrent: dict[str, Any] | None, idle: dict[str, Any] | None,
            failures: list[str], h: Hermetic) -> None:
    print("| figure | measured |")
    print("|---|---|")
    print("| daemons' open-files limit (soft/hard) | " + ", ".join(
        f"{ns} {s}/{hd}" for ns, (s, hd) in limits.items()) +
        f" (started with soft {args.daemon_nofile or 'the bench' + chr(39) + 's'}) |")
    asked = f" (asked for {args.loop})" if args.loop else ""
    print("| daemons' event loop | " + ", ".join(f"{ns} {loop}" for ns, loop in loops.items())
          + asked + " |")
    if concurrent:
        r, rates = concurrent["result"], concurrent["rates"]
        ratio = _ratio(rates[-1], rates[0]) if rates else "-"
        before, during, after = concurrent["rss"]
        print(f"| {args.connections} concurrent: completed | {r['completed']} of "
              f"{r['connections']} ({concurrent['sinks_at_start']} had reached the sink "
              f"{concurrent['reached']:.1f} s after the start) |")
        print(f"| {args.connections} concurrent: aggregate MB/s over "
              f"{concurrent['window']:.1f} s | {concurrent['aggregate']:.0f} |")
        if rates:
            print(f"| per connection MB/s min / p10 / p50 / p90 / max | {rates[0]:.3f} / "
                  f"{_pct(rates, 0.1):.3f} / {statistics.median(rates):.3f} / "
                  f"{_pct(rates, 0.9):.3f} / {rates[-1]:.3f} |")
            idle_ones = sum(1 for rate in rates if rate == 0)
            print(f"| per connection max/min | {ratio} (p90/p10 "
                  f"{_ratio(_pct(rates, 0.9), _pct(rates, 0.1))}; {idle_ones} connections "
                  "got nothing in the window) |")
        print(f"| RSS before / during / after | {_kib(before)} / {_kib(during)} / "
              f"{_kib(after)} |")
        print("| open fds during | " + ", ".join(
            f"{ns} {n}" for ns, n in concurrent["fds"].items()) + " |")
    if idle:
        e = idle["echo"]
        print(f"| {args.idle} idle: held, echoed at the end | {e['held']}, {e['echoed']} "
              f"(opened in {idle['opened_seconds']:.1f} s) |")
        print("| memory per idle connection (RSS growth / count) | " + ", ".join(
            f"{ns} {kib:.1f} KiB" for ns, kib in idle["per_connection"].items()) + " |")
        print("| open fds before / held | " + ", ".join(
            f"{ns} {idle['fds'][0][ns]} / {idle['fds'][1][ns]}" for ns in idle["fds"][1])
            + " |")
    for failure in failures:
        print(f"\nFAILED {failure}")
        for ns in ("a", "b"):
            log = h.home / "skupper" / "namespaces" / ns / "logs" / "daemon.log"
            if log.exists():
                tail = log.read_text(errors="replace").splitlines()[-3:]
                print(f"  last lines of {ns}'s daemon.log: " + " | ".join(tail)[-600:])
    print(f"\n{args.connections} connections for {args.seconds} s (at most "
          f"{args.per_connection_mib} MiB each), {args.idle} idle connections")
    for line in machine_info():
        print(line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--per-connection-mib", type=int, default=256)
    parser.add_argument("--idle", type=int, default=5000)
    parser.add_argument("--daemon-nofile", type=int, default=1024,
                        help="soft open-files limit the daemons start with (0: the bench's)")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default=None,
                        help="SKUPPER_EVENT_LOOP for the daemons (default: theirs)")
    parser.add_argument("--profile", metavar="DIR", default="",
                        help="py-spy and perf the daemons during the concurrent window")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.connections, args.seconds, args.idle = 200, 4.0, 1000
    raise_own_limit()
    with hermetic("skupper-bench-scale-", keep=args.keep) as h:
        return _bench(h, args)


if __name__ == "__main__":
    sys.exit(main())
