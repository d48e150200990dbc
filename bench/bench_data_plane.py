"""Benchmark: one link's data plane, before and after, on each event loop, beside stunnel.

    .venv/bin/python bench/bench_data_plane.py [--rounds 3] [--mib 128] [--before REV]

Pairs of sites, alike in all but their code or loop, one link each (listener at the
first, connector at the second, 127.0.0.1 only), measured interleaved per round:

  stunnel      two stunnel4 processes, mutual TLS 1.3 (P-256), the baseline
  before       this project at git revision REV (default: the data-plane branch's base),
               its source extracted to a temp folder and put first on PYTHONPATH
  asyncio      this checkout, daemons with SKUPPER_EVENT_LOOP=asyncio
  uvloop       this checkout, daemons with SKUPPER_EVENT_LOOP=uvloop (the default)

Figures: one-stream and 16-stream throughput (blocking-socket client, the server counts
and answers one byte), round-trip p50/p99 (64 bytes echoed on one connection),
connections per second (8 concurrent blocking clients, each connecting, echoing 64
bytes and closing), and the two forwarders' CPU seconds per GB moved (user + system
time of both daemons, or both stunnels, over the one-stream transfer).

Every process is stopped by pid at the end; every loop is bounded (fixed counts, a
time cap per transfer, timeouts on every socket).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import threading
import time
from io import BytesIO
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import LOOPBACK, PYTHON, REPO, Hermetic, hermetic, machine_info

MIB = 1024 * 1024
CHUNK = 256 * 1024
ECHO = 64
TIMEOUT = 30.0
STUNNEL = shutil.which("stunnel4") or shutil.which("stunnel")
DEFAULT_BEFORE = "ab469b0"
TICK = os.sysconf("SC_CLK_TCK")


# --- the server process: a sink and an echo ------------------------------------------------


class _Sink(asyncio.Protocol):
    """An 8-byte length, then that many bytes; answers b"!" when all arrived."""

    def __init__(self) -> None:
        self.want, self.got, self.head = -1, 0, b""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.want < 0:
            self.head += data
            if len(self.head) < 8:
                return
            self.want, data = int.from_bytes(self.head[:8], "big"), self.head[8:]
        self.got += len(data)
        if self.got >= self.want:
            self.transport.write(b"!")


class _Echo(asyncio.Protocol):
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


async def _serve() -> None:
    loop = asyncio.get_running_loop()
    sink = await loop.create_server(_Sink, LOOPBACK, 0, backlog=2048)
    echo = await loop.create_server(_Echo, LOOPBACK, 0, backlog=2048)
    print(json.dumps({"sink": sink.sockets[0].getsockname()[1],
                      "echo": echo.sockets[0].getsockname()[1]}), flush=True)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(loop.create_future(), 1800)


# --- clients (blocking sockets, in this process) ---------------------------------------------


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection((LOOPBACK, port), timeout=TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _send_all(port: int, size: int) -> None:
    with _connect(port) as sock:
        block = memoryview(b"x" * CHUNK)
        sock.sendall(size.to_bytes(8, "big"))
        left = size
        while left > 0:
            n = min(CHUNK, left)
            sock.sendall(block[:n])
            left -= n
        if sock.recv(1) != b"!":
            raise RuntimeError("the sink did not confirm")


def _throughput(port: int, streams: int, mib: int) -> float:
    size = mib * MIB // streams
    threads = [threading.Thread(target=_send_all, args=(port, size)) for _ in range(streams)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT * 2)
    return size * streams / (time.perf_counter() - started) / 1e6


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise RuntimeError("the echo closed early")
        data += chunk
    return data


def _latency(port: int, requests: int) -> list[float]:
    samples = []
    payload = b"r" * ECHO
    with _connect(port) as sock:
        for i in range(requests + 50):
            started = time.perf_counter()
            sock.sendall(payload)
            _recv_exactly(sock, ECHO)
            if i >= 50:
                samples.append((time.perf_counter() - started) * 1e6)
    return samples


def _connection_rate(port: int, clients: int = 8, total: int = 400) -> float:
    failures: list[BaseException] = []

    def worker(count: int) -> None:
        try:
            for _ in range(count):
                with _connect(port) as sock:
                    sock.sendall(b"c" * ECHO)
                    _recv_exactly(sock, ECHO)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(total // clients,))
               for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT * 2)
    if failures:
        raise RuntimeError(f"connection rate: {failures[0]!r}")
    return total / (time.perf_counter() - started)


# --- the set-up ------------------------------------------------------------------------------


def _cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICK


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _wait_listening(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex((LOOPBACK, port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def _stunnel(h: Hermetic, work: Path, ports: dict[str, int]) -> tuple[dict[str, int], list[int]]:
    from skupper.certs.issue import generate_ca, issue_certificate

    pki = work / "pki"
    pki.mkdir(mode=0o700)
    ca = generate_ca("bench CA")
    server = issue_certificate(ca, "127.0.0.1", usage="server", hosts=[LOOPBACK])
    client = issue_certificate(ca, "bench client", usage="client")
    for name, data in (("ca.crt", ca.cert_pem), ("server.crt", server.cert_pem),
                       ("server.key", server.key_pem), ("client.crt", client.cert_pem),
                       ("client.key", client.key_pem)):
        (pki / name).write_bytes(data)
    front = {name: _free_port() for name in ports}
    middle = {name: _free_port() for name in ports}
    common = ("foreground = yes\npid =\ndebug = 3\nsslVersionMin = TLSv1.3\n"
              f"CAfile = {pki / 'ca.crt'}\nverifyChain = yes\n")
    confs = {"client": common + f"client = yes\ncert = {pki / 'client.crt'}\n"
                                f"key = {pki / 'client.key'}\n",
             "server": common + f"cert = {pki / 'server.crt'}\nkey = {pki / 'server.key'}\n"}
    for name in ports:
        confs["client"] += f"[{name}]\naccept = {LOOPBACK}:{front[name]}\n" \
                           f"connect = {LOOPBACK}:{middle[name]}\n"
        confs["server"] += f"[{name}]\naccept = {LOOPBACK}:{middle[name]}\n" \
                           f"connect = {LOOPBACK}:{ports[name]}\n"
    pids = []
    for side, text in confs.items():
        conf = work / f"stunnel-{side}.conf"
        conf.write_text(text)
        pids.append(h.spawn([str(STUNNEL), str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL).pid)
    for port in [*front.values(), *middle.values()]:
        _wait_listening(port)
    return front, pids


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
            out[service] = _free_port()
            h.skupper("listener", "create", key, str(out[service]), "--host", LOOPBACK,
                      "-n", first, "--wait", "ready", "--timeout", "30s")
    finally:
        h.env.clear()
        h.env.update(saved)
    return out, [h.daemon_pid(first), h.daemon_pid(second)]


def _measure(ports: dict[str, int], pids: list[int], args: argparse.Namespace) -> dict[str, float]:
    if args.only:  # one load again and again, to profile the daemons under it
        deadline = time.monotonic() + args.only_seconds
        while time.monotonic() < deadline:
            {"one": lambda: _throughput(ports["sink"], 1, args.mib),
             "sixteen": lambda: _throughput(ports["sink"], 16, args.mib),
             "latency": lambda: _latency(ports["echo"], args.requests),
             "connections": lambda: _connection_rate(ports["echo"])}[args.only]()
        return {}
    cpu = _cpu_seconds(pids)
    one = _throughput(ports["sink"], 1, args.mib)
    cpu = _cpu_seconds(pids) - cpu
    many = _throughput(ports["sink"], 16, args.mib)
    lat = sorted(_latency(ports["echo"], args.requests))
    rate = _connection_rate(ports["echo"])
    return {"one": one, "sixteen": many, "p50": lat[len(lat) // 2],
            "p99": lat[min(len(lat) - 1, int(0.99 * len(lat)))], "conn/s": rate,
            "cpu/GB": cpu / (args.mib * MIB / 1e9)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=("bench", "server"), default="bench")
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
    if args.role == "server":
        asyncio.run(_serve())
        return 0
    with hermetic("skupper-bench-data-plane-", keep=args.keep) as h:
        return _bench(h, args)


def _bench(h: Hermetic, args: argparse.Namespace) -> int:
    work = h.home / "bench"
    work.mkdir(mode=0o700)
    server = h.spawn([PYTHON, __file__, "--role", "server"], stdout=subprocess.PIPE)
    assert server.stdout is not None
    ports: dict[str, int] = json.loads(server.stdout.readline())
    wanted = args.paths.split(",")
    paths: dict[str, tuple[dict[str, int], list[int]]] = {}
    if "stunnel" in wanted and STUNNEL:
        paths["stunnel"] = _stunnel(h, work, ports)
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
