"""Benchmark: one link's data plane, before and after, on each event loop, beside stunnel.

    .venv/bin/python bench/bench_data_plane.py [--rounds 3] [--mib 128] [--before REV]

Pairs of sites, alike in all but their code or loop, one link each (listener at the
first, connector at the second, 127.0.0.1 only), measured interleaved per round:

  stunnel      two stunnel4 processes, mutual TLS 1.3 (P-256), the baseline
  before       this project at git revision REV (default: the data-plane branch's base),
               its source extracted to a temp folder and put first on PYTHONPATH
  asyncio      this checkout, daemons with SKUPPER_EVENT_LOOP=asyncio
  uvloop       this checkout, daemons with SKUPPER_EVENT_LOOP=uvloop (the default)

Figures, with bench/traffic.py's loads and its threaded server (as bench_services.py):
one-stream and 16-stream throughput (the server counts and answers one byte), round-trip
p50/p99 (64 bytes echoed on one connection), connections per second (8 concurrent
blocking clients, each connecting, echoing 64 bytes and closing), and the two
forwarders' CPU seconds per GB moved (user + system time of both daemons, or both
stunnels, over the one-stream transfer).

Every process is stopped by pid at the end; every loop is bounded (fixed counts, a
time cap per transfer, timeouts on every socket).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from io import BytesIO
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import LOOPBACK, PYTHON, REPO, Hermetic, hermetic, machine_info
from service_sites import bench_pki, cpu_seconds, free_port, stunnel_pair
from traffic import ECHO_SIZE, MIB, Client, connection_rate, latency, throughput

ECHO = ECHO_SIZE
TIMEOUT = 30.0
STUNNEL = shutil.which("stunnel4") or shutil.which("stunnel")
DEFAULT_BEFORE = "ab469b0"
TRAFFIC = str(Path(__file__).resolve().parent / "traffic.py")


# --- clients: bench/traffic.py's blocking-socket loads, in this process ----------------------


def _throughput(port: int, streams: int, mib: int) -> float:
    return throughput(Client(port, None, TIMEOUT), streams, mib)


def _latency(port: int, requests: int) -> list[float]:
    return latency(Client(port, None, TIMEOUT), requests)


def _connection_rate(port: int, clients: int = 8, total: int = 400) -> float:
    return connection_rate(Client(port, None, TIMEOUT), clients, total)


def _stunnel(h: Hermetic, pki: Path, work: Path,
             ports: dict[str, int]) -> tuple[dict[str, int], list[int]]:
    assert STUNNEL is not None
    front, pids = stunnel_pair(h, STUNNEL, pki, work, ports)
    return front, list(pids.values())


def _before_source(work: Path, revision: str) -> Path:
    """This project's src/ at ``revision``, extracted (git archive), for PYTHONPATH."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", revision, "src"],
                             capture_output=True, check=True, timeout=60).stdout
    folder = work / "before"
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return folder / "src"


def _pair(h: Hermetic, work: Path, ports: dict[str, int], first: str, second: str,
          extra_env: dict[str, str]) -> tuple[dict[str, int], list[int]]:
    """Sites first -> second, one link, a listener at first for each server at second."""
    saved = dict(h.env)
    h.env.update(extra_env)
    try:
        h.skupper("site", "create", first, "-n", first, "--enable-link-access")
        h.skupper("site", "create", second, "-n", second)
        token = work / f"{first}-{second}.yaml"
        h.skupper("access-token", "issue", str(token), "-n", first)
        h.skupper("access-token", "redeem", str(token), "-n", second)
        out: dict[str, int] = {}
        for service, port in ports.items():
            key = f"{service}-{second}"
            h.skupper("connector", "create", key, str(port), "-n", second)
            out[service] = free_port()
            h.skupper("listener", "create", key, str(out[service]), "--host", LOOPBACK,
                      "-n", first, "--wait", "ready", "--timeout", "30s")
    finally:
        h.env.clear()
        h.env.update(saved)
    return out, [h.daemon_pid(first), h.daemon_pid(second)]


def _measure(ports: dict[str, int], pids: list[int], args: argparse.Namespace) -> dict[str, float]:
    if args.only:  # one load again and again, to profile the daemons under it
        loads: dict[str, Callable[[], object]] = {
            "one": lambda: _throughput(ports["sink"], 1, args.mib),
            "sixteen": lambda: _throughput(ports["sink"], 16, args.mib),
            "latency": lambda: _latency(ports["echo"], args.requests),
            "connections": lambda: _connection_rate(ports["echo"]),
        }
        deadline = time.monotonic() + args.only_seconds
        while time.monotonic() < deadline:
            loads[args.only]()
        return {}
    cpu = cpu_seconds(pids)
    one = _throughput(ports["sink"], 1, args.mib)
    cpu = cpu_seconds(pids) - cpu
    many = _throughput(ports["sink"], 16, args.mib)
    lat = sorted(_latency(ports["echo"], args.requests))
    rate = _connection_rate(ports["echo"])
    return {"one": one, "sixteen": many, "p50": lat[len(lat) // 2],
            "p99": lat[min(len(lat) - 1, int(0.99 * len(lat)))], "conn/s": rate,
            "cpu/GB": cpu / (args.mib * MIB / 1e9)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mib", type=int, default=128)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--before", default=DEFAULT_BEFORE)
    parser.add_argument("--paths", default="stunnel,before,asyncio,uvloop")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--only", choices=("one", "sixteen", "latency", "connections"),
                        help="repeat one load for --only-seconds per path (for profiling)")
    parser.add_argument("--only-seconds", type=float, default=30.0)
    args = parser.parse_args()
    with hermetic("skupper-bench-data-plane-", keep=args.keep) as h:
        return _bench(h, args)


def _bench(h: Hermetic, args: argparse.Namespace) -> int:
    work = h.home / "bench"
    work.mkdir(mode=0o700)
    pki = work / "pki"
    pki.mkdir(mode=0o700)
    bench_pki(pki)
    # The same threaded sink and echo as bench_services.py's (bench/traffic.py).
    server = h.spawn([PYTHON, TRAFFIC, "server", "--pki", str(pki)], stdout=subprocess.PIPE)
    assert server.stdout is not None
    ports = {name: port for name, port in json.loads(server.stdout.readline()).items()
             if name in ("sink", "echo")}
    wanted = args.paths.split(",")
    paths: dict[str, tuple[dict[str, int], list[int]]] = {}
    if "stunnel" in wanted and STUNNEL:
        paths["stunnel"] = _stunnel(h, pki, work, ports)
    if "before" in wanted:
        paths["before"] = _pair(h, work, ports, "b1", "b2", {
            "PYTHONPATH": str(_before_source(work, args.before))})
    if "asyncio" in wanted:
        paths["asyncio"] = _pair(h, work, ports, "a1", "a2", {"SKUPPER_EVENT_LOOP": "asyncio"})
    if "uvloop" in wanted:
        paths["uvloop"] = _pair(h, work, ports, "u1", "u2", {"SKUPPER_EVENT_LOOP": "uvloop"})
    print("pids " + json.dumps({label: pids for label, (_, pids) in paths.items()}),
          file=sys.stderr, flush=True)
    results: dict[str, list[dict[str, float]]] = {label: [] for label in paths}
    for round_no in range(args.rounds):
        for label, (service_ports, pids) in paths.items():
            got = _measure(service_ports, pids, args)
            if not got:
                continue
            results[label].append(got)
            print(f"round {round_no + 1} {label}: " + ", ".join(
                f"{k} {v:.1f}" for k, v in got.items()), file=sys.stderr, flush=True)
    if args.only:
        return 0
    med = {label: {k: statistics.median(r[k] for r in runs) for k in runs[0]}
           for label, runs in results.items()}
    base = med.get("stunnel")
    print("| path | 1 stream MB/s | 16 streams MB/s | p50 µs | p99 µs | connections/s "
          "| forwarders' CPU s per GB |")
    print("|---|---|---|---|---|---|---|")
    for label, m in med.items():
        print(f"| {label} | {m['one']:.0f} | {m['sixteen']:.0f} | {m['p50']:.0f} | "
              f"{m['p99']:.0f} | {m['conn/s']:.0f} | {m['cpu/GB']:.2f} |")
    if base:
        print("\nratios to stunnel (targets: 1 stream >= 1.0, p50/p99 <= 1.5, "
              "conn/s >= 2.5, CPU/GB <= 1.0):")
        for label, m in med.items():
            if label != "stunnel":
                print(f"  {label}: 1 stream {m['one'] / base['one']:.2f}, "
                      f"p50 {m['p50'] / base['p50']:.2f}, p99 {m['p99'] / base['p99']:.2f}, "
                      f"conn/s {m['conn/s'] / base['conn/s']:.2f}, "
                      f"CPU/GB {m['cpu/GB'] / base['cpu/GB']:.2f}")
    print(f"\n{args.rounds} rounds (medians), {args.mib} MiB per throughput run, "
          f"{args.requests} round trips of {ECHO} bytes, 400 connections (8 at a time)")
    for line in machine_info():
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
