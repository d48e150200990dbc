"""Benchmark: service traffic through links, side by side with its baselines.

    .venv/bin/python bench/bench_services.py [--quick] [--rounds 3] [--mib 256]
        [--requests 2000] [--idle 1000] [--loop asyncio|uvloop|both] [--check]
        [--profile DIR] [--metrics-cost] [--keep]

One run measures, on 127.0.0.1, every figure for every path, interleaved per round:

  direct         the client connects to the server itself (plain TCP)
  bare TLS pipe  client and server speak mutual TLS 1.3 (P-256) to each other, nothing
                 between: what Python's ssl module costs on its own
  stunnel        client -> stunnel -> (mutual TLS 1.3) -> stunnel -> server, two stunnel4
                 processes (skipped when stunnel4 is not installed)
  1 link         client -> listener at site a -> link -> connector at site b -> server
  2 links        client -> listener at site a -> b -> c -> connector at site c -> server

Every path is loaded by the same programs (bench/traffic.py): blocking-socket clients,
a fresh process per figure, and one threaded server process. Figures per path: one
stream and 16 streams MB/s, p50/p99 of 64-byte echo round trips on one connection,
connections/s (8 concurrent clients, each connecting, echoing 64 bytes and closing, 400
in all), the forwarders' CPU seconds per GB moved by the two throughput runs (utime +
stime of the stunnels or of the path's site daemons, from /proc/<pid>/stat), and each
daemon's RSS growth per idle connection held through two links.

``--loop`` sets SKUPPER_EVENT_LOOP for the daemons it starts (``both``: one set of sites
per loop); the loop each daemon really runs is read from its memory map and reported.
``--profile DIR`` adds one unmeasured pass that records py-spy and perf of the 1-link
daemons under each load and writes per-load summaries (see bench/profiles.py).
``--metrics-cost`` adds two like pairs of sites, one without the bridge's byte counting.
``--check`` exits 1 when a target against stunnel is missed (or cannot be judged).

Everything is stopped by pid at the end (also on error, Ctrl-C or SIGTERM); every loop
is bounded: fixed sizes and counts, a time cap on every socket call and every wait.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import PYTHON, Hermetic, hermetic, machine_info
from profiles import Profiler
from service_sites import (
    bench_pki,
    cpu_seconds,
    event_loop_of,
    linked_sites,
    rss_kib,
    stunnel_pair,
    uncounted_pair,
)
from traffic import ECHO_SIZE, MIB, raise_open_files_limit

TRAFFIC = str(Path(__file__).resolve().parent / "traffic.py")
STUNNEL = shutil.which("stunnel4") or shutil.which("stunnel")
CAP_SECONDS = 30.0
PROFILE_CAP_SECONDS = 120.0
LOOPS = ("asyncio", "uvloop")

# Targets against stunnel in the same run (issue 14): (figure, is "higher better", bound).
TARGETS = (
    ("one", "1 stream MB/s", True, 1.0),
    ("p50", "p50 µs", False, 1.5),
    ("p99", "p99 µs", False, 1.5),
    ("rate", "connections/s", True, 2.5),
    ("cpu", "forwarders' CPU s per GB", False, 1.0),
)


@dataclass
class TrafficPath:
    """One way from the client to the server, and the processes that forward on it."""

    label: str
    sink: int
    echo: int
    tls: bool = False
    forwarders: dict[str, int] = field(default_factory=dict)  # name -> pid
    loop: str = ""  # the event loop its daemons run ("" for no daemons)
    figures: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, value: float) -> None:
        self.figures.setdefault(name, []).append(value)

    def median(self, name: str) -> float | None:
        values = self.figures.get(name)
        return statistics.median(values) if values else None


def _client(h: Hermetic, pki: Path, path: TrafficPath, port: int, *extra: str,
            cap: float = CAP_SECONDS) -> Any:
    argv = [PYTHON, TRAFFIC, "client", "--pki", str(pki), "--port", str(port),
            "--cap", str(cap), *extra]
    if path.tls:
        argv.append("--tls")
    done = subprocess.run(argv, env=h.env, capture_output=True, text=True,
                          timeout=cap * 4 + 30, check=False, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise RuntimeError(f"{path.label}: client {' '.join(extra)} failed: "
                           f"{done.stderr.strip()[-1500:]}")
    return json.loads(done.stdout)


def _stunnel(h: Hermetic, pki: Path, work: Path, ports: dict[str, int]) -> TrafficPath:
    """Two stunnel4 processes, client side and server side, for the sink and the echo."""
    assert STUNNEL is not None  # the caller skips this path without it
    front, pids = stunnel_pair(h, STUNNEL, pki, work, ports)
    return TrafficPath("stunnel", front["sink"], front["echo"], forwarders=pids)


def _link_paths(h: Hermetic, work: Path, ports: dict[str, int], loop: str,
                labelled: bool) -> list[TrafficPath]:
    prefix = "u" if loop == "uvloop" and labelled else ""
    saved = dict(h.env)
    if loop:
        h.env["SKUPPER_EVENT_LOOP"] = loop
    try:
        made = linked_sites(h, work, ports, prefix)
    finally:
        h.env.clear()
        h.env.update(saved)
    paths = []
    for label, (service_ports, sites) in made.items():
        pids = {ns: h.daemon_pid(ns) for ns in sites}
        running = sorted({event_loop_of(pid) for pid in pids.values()})
        shown = f"{label} ({loop})" if labelled else label
        paths.append(TrafficPath(shown, service_ports["sink"], service_ports["echo"],
                           forwarders=pids, loop="/".join(running)))
    return paths


def _measure_round(h: Hermetic, pki: Path, path: TrafficPath, args: argparse.Namespace) -> None:
    before = cpu_seconds(path.forwarders.values())
    one = _client(h, pki, path, path.sink, "--test", "throughput", "--streams", "1",
                  "--mib", str(args.mib))
    many = _client(h, pki, path, path.sink, "--test", "throughput", "--streams", "16",
                   "--mib", str(args.mib))
    if path.forwarders:
        gigabytes = 2 * args.mib * MIB / 1e9
        path.add("cpu", (cpu_seconds(path.forwarders.values()) - before) / gigabytes)
    samples = sorted(_client(h, pki, path, path.echo, "--test", "latency",
                             "--requests", str(args.requests)))
    rate = _client(h, pki, path, path.echo, "--test", "connrate", "--clients", "8",
                   "--total", str(args.connections))
    path.add("one", one)
    path.add("sixteen", many)
    path.add("p50", _pct(samples, 0.50))
    path.add("p99", _pct(samples, 0.99))
    path.add("rate", rate)


def _pct(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _profile(h: Hermetic, pki: Path, paths: list[TrafficPath], args: argparse.Namespace) -> None:
    """One unmeasured pass per 1-link path: each load under py-spy and perf."""
    profiler = Profiler(Path(args.profile).resolve())
    if not profiler.tools:
        print("profile: neither py-spy nor perf is installed", file=sys.stderr)
        return
    # Longer than the measured runs, so every load gives a few seconds of samples.
    loads = {
        "throughput": ("--test", "throughput", "--streams", "1", "--mib", str(16 * args.mib)),
        "latency": ("--test", "latency", "--requests", str(5 * args.requests)),
        "connrate": ("--test", "connrate", "--clients", "8",
                     "--total", str(10 * args.connections)),
    }
    for path in paths:
        if not path.label.startswith("1 link") or "counted" in path.label:
            continue
        tag = path.label.replace(" ", "").replace("(", "-").replace(")", "")
        for load, extra in loads.items():
            profiler.start(f"{tag}-{load}", path.forwarders)
            try:
                port = path.sink if load == "throughput" else path.echo
                _client(h, pki, path, port, *extra, cap=PROFILE_CAP_SECONDS)
            finally:
                files = profiler.stop()
            profiler.summarise(files)
            print(f"profile {path.label} {load}: {len(files)} files in {profiler.folder}",
                  file=sys.stderr)


def _idle_memory(h: Hermetic, pki: Path, path: TrafficPath, count: int) -> dict[str, float]:
    """RSS growth per connection of each daemon on ``path`` while ``count`` are held."""
    before = {ns: rss_kib(pid) for ns, pid in path.forwarders.items()}
    child = subprocess.Popen(
        [PYTHON, TRAFFIC, "client", "--port", str(path.echo), "--test", "idle",
         "--count", str(count), "--cap", str(CAP_SECONDS)],
        env=h.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdin is not None
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError(f"{path.label}: the idle client failed")
        time.sleep(1.0)
        after = {ns: rss_kib(pid) for ns, pid in path.forwarders.items()}
        child.stdin.write("\n")
        child.stdin.flush()
        child.wait(CAP_SECONDS)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(5)
    return {ns: (after[ns] - before[ns]) / count for ns in before}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mib", type=int, default=256, help="MiB per throughput run")
    parser.add_argument("--requests", type=int, default=2000, help="echo round trips")
    parser.add_argument("--connections", type=int, default=400,
                        help="connections per connection-rate run")
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--loop", choices=(*LOOPS, "both"), default=None,
                        help="SKUPPER_EVENT_LOOP for the daemons (default: theirs)")
    parser.add_argument("--quick", action="store_true", help="one round, small sizes")
    parser.add_argument("--check", action="store_true", help="exit 1 on a missed target")
    parser.add_argument("--profile", metavar="DIR", default="",
                        help="py-spy and perf the 1-link daemons under each load")
    parser.add_argument("--metrics-cost", action="store_true",
                        help="also run a link whose daemons do not count bytes")
    parser.add_argument("--keep", action="store_true", help="keep the temp data home")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.mib, args.requests, args.idle = 1, 64, 500, 200
    raise_open_files_limit()
    with hermetic("skupper-bench-services-", keep=args.keep) as h:
        paths = _set_up(h, args)
        pki = h.home / "bench" / "pki"
        for round_no in range(args.rounds):
            for path in paths:
                _measure_round(h, pki, path, args)
                print(f"round {round_no + 1} {_line(path, -1)}", file=sys.stderr)
        memory = {p.label: _idle_memory(h, pki, p, args.idle)
                  for p in paths if p.label.startswith("2 links")}
        if args.profile:
            _profile(h, pki, paths, args)
        missed = _report(paths, memory, args)
    return 1 if args.check and missed else 0


def _set_up(h: Hermetic, args: argparse.Namespace) -> list[TrafficPath]:
    work = h.home / "bench"
    pki = work / "pki"
    pki.mkdir(mode=0o700, parents=True)
    bench_pki(pki)
    server = h.spawn([PYTHON, TRAFFIC, "server", "--pki", str(pki)], stdout=subprocess.PIPE)
    assert server.stdout is not None
    ports: dict[str, int] = json.loads(server.stdout.readline())
    paths = [TrafficPath("direct", ports["sink"], ports["echo"]),
             TrafficPath("bare TLS pipe", ports["tls-sink"], ports["tls-echo"], tls=True)]
    if STUNNEL:
        paths.append(_stunnel(h, pki, work, ports))
    else:
        print("stunnel4 not installed (apt-get install stunnel4): its path is skipped",
              file=sys.stderr)
    loops = LOOPS if args.loop == "both" else (args.loop or "",)
    for loop in loops:
        print(f"creating linked sites ({loop or 'default loop'}) ...", file=sys.stderr)
        paths += _link_paths(h, work, ports, loop, labelled=args.loop == "both")
    if args.metrics_cost:
        for label, counting, names in (("1 link, counted", True, ("d", "e")),
                                       ("1 link, uncounted", False, ("f", "g"))):
            service_ports = uncounted_pair(h, work, ports, *names, counting=counting)
            pids = {ns: h.daemon_pid(ns) for ns in names}
            paths.append(TrafficPath(label, service_ports["sink"], service_ports["echo"],
                               forwarders=pids, loop=event_loop_of(pids[names[0]])))
    return paths


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def _line(path: TrafficPath, index: int) -> str:
    f = path.figures
    cpu = f"{f['cpu'][index]:.1f}" if "cpu" in f else "-"
    return (f"{path.label}: 1 stream {f['one'][index]:.0f} MB/s, 16 streams "
            f"{f['sixteen'][index]:.0f} MB/s, p50 {f['p50'][index]:.0f} us, p99 "
            f"{f['p99'][index]:.0f} us, {f['rate'][index]:.0f} connections/s, CPU {cpu} s/GB")


def _report(paths: list[TrafficPath], memory: dict[str, dict[str, float]],
            args: argparse.Namespace) -> bool:
    """Prints the tables; True when a target was missed or could not be judged."""
    print("| path | 1 stream MB/s | 16 streams MB/s | p50 µs | p99 µs | connections/s | "
          "forwarders' CPU s per GB |")
    print("|---|---|---|---|---|---|---|")
    for p in paths:
        cells = [_cell(p.median(k)) for k in ("one", "sixteen", "p50", "p99", "rate", "cpu")]
        print(f"| {p.label} | " + " | ".join(cells) + " |")
    print()
    for p in paths:
        if p.loop:
            asked = args.loop if args.loop in LOOPS else (
                p.label.rsplit("(", 1)[-1].rstrip(")") if args.loop == "both" else "")
            note = f" (asked for {asked}: SKUPPER_EVENT_LOOP is not obeyed)" \
                if asked and p.loop != asked and "counted" not in p.label else ""
            print(f"- {p.label}: the daemons run {p.loop}{note}")
    for label, per_site in memory.items():
        print(f"- memory per idle connection, {label} ({args.idle} held, RSS growth / "
              "connections): " + ", ".join(f"site {ns} {kib:.1f} KiB"
                                          for ns, kib in per_site.items()))
    missed = _targets(paths)
    if any(p.label == "1 link, uncounted" for p in paths):
        counted = next(p for p in paths if p.label == "1 link, counted")
        plain = next(p for p in paths if p.label == "1 link, uncounted")
        print(f"\nmetrics' cost (two like pairs of sites): counted / uncounted "
              f"{counted.median('one') / plain.median('one'):.1%} one stream, "  # type: ignore[operator]
              f"{counted.median('sixteen') / plain.median('sixteen'):.1%} 16 streams")  # type: ignore[operator]
    print(f"\n{args.rounds} interleaved rounds (medians), {args.mib} MiB per throughput run "
          f"(16 streams: {args.mib / 16:g} MiB each), {args.requests} round trips of "
          f"{ECHO_SIZE} bytes, {args.connections} connections per rate run, "
          f"{args.idle} idle connections")
    for line in machine_info():
        print(line)
    return missed


def _targets(paths: list[TrafficPath]) -> bool:
    stunnel = next((p for p in paths if p.label == "stunnel"), None)
    links = [p for p in paths if p.label.startswith("1 link") and "counted" not in p.label]
    print("\n| target (1 link vs stunnel, same run) | 1 link | stunnel | ratio | bound | met? |")
    print("|---|---|---|---|---|---|")
    if stunnel is None:
        print("| all | - | - | - | - | cannot judge: stunnel4 is not installed |")
        return True
    missed = False
    for link in links:
        for key, name, higher, bound in TARGETS:
            ours, theirs = link.median(key), stunnel.median(key)
            if ours is None or theirs is None or theirs == 0:
                print(f"| {link.label}: {name} | - | - | - | - | cannot judge |")
                missed = True
                continue
            ratio = ours / theirs
            met = ratio >= bound if higher else ratio <= bound
            missed = missed or not met
            sign = ">=" if higher else "<="
            print(f"| {link.label}: {name} | {_cell(ours)} | {_cell(theirs)} | {ratio:.2f}x | "
                  f"{sign} {bound:.1f}x | {'PASS' if met else 'MISS'} |")
    return missed


if __name__ == "__main__":
    sys.exit(main())
