"""Benchmark: service traffic through links, side by side with its baselines.

    .venv/bin/python bench/bench_services.py [--quick] [--rounds 2] [--mib 256]
                                             [--idle 1000] [--keep] [--metrics-cost]

One run measures, on 127.0.0.1, every figure for every path, interleaved per round:

  direct     the client connects to the server itself (plain TCP)
  bare-tls   a bare asyncio TLS pipe in Python: client and server speak TLS 1.3 to each
             other (P-256, mutual), nothing between: the ceiling for Python here
  stunnel    the usual TLS tunnel: client -> stunnel -> (mutual TLS 1.3) -> stunnel ->
             server, two stunnel4 processes (skipped when stunnel4 is not installed)
  1 link     client -> listener at site a -> link -> connector at site b -> server
  2 links    client -> listener at site a -> b -> c -> connector at site c -> server

With ``--metrics-cost`` two more pairs of sites, alike in all else, stand side by side:
d -> e as shipped ("1 link, counted") and f -> g with the bridge's byte counting taken
out ("1 link, uncounted": a ``sitecustomize`` the bench writes replaces the two
counting methods of ``TcpSide`` with copies that do not count): what the metrics cost
the data path.

Figures: throughput of one stream and of 16 parallel streams (the client sends, the
server counts and answers one byte when all arrived), request/response latency p50
and p99 (64-byte echo, one connection, ``--requests`` round trips), and the memory
an idle connection costs each site daemon (``--idle`` connections held open through
two links; RSS growth / connections).

Processes: the servers run in one process, each client in a fresh one, the site
daemons and stunnel in theirs; everything is stopped by pid at the end (also on error,
Ctrl-C or SIGTERM). Every loop is bounded: fixed sizes and counts, a time cap per
transfer, timeouts on every wait.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import resource
import shutil
import ssl
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import LOOPBACK, PYTHON, Hermetic, hermetic, machine_info

MIB = 1024 * 1024
CHUNK = 256 * 1024
SERVER_LIFETIME_SECONDS = 900.0
TRANSFER_CAP_SECONDS = 30.0
ECHO_SIZE = 64
STUNNEL = shutil.which("stunnel4") or shutil.which("stunnel")


# --- the server process ------------------------------------------------------------------


class _Sink(asyncio.BufferedProtocol):
    """Reads an 8-byte length, then that many bytes; answers b"!" when all arrived."""

    def __init__(self) -> None:
        self._buf = bytearray(MIB)
        self._want = -1
        self._got = 0
        self._head = b""
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        return memoryview(self._buf)

    def buffer_updated(self, nbytes: int) -> None:
        data = memoryview(self._buf)[:nbytes]
        if self._want < 0:
            need = 8 - len(self._head)
            self._head += bytes(data[:need])
            data = data[need:]
            if len(self._head) < 8:
                return
            self._want = int.from_bytes(self._head, "big")
        self._got += len(data)
        if self._got >= self._want:
            self.transport.write(b"!")

    def eof_received(self) -> bool:
        return False


class _Echo(asyncio.Protocol):
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


def _server_tls(pki: Path) -> ssl.SSLContext:
    from skupper.certs.tls import server_context

    return server_context((pki / "server.crt").read_bytes(), (pki / "server.key").read_bytes(),
                          client_ca_pem=(pki / "ca.crt").read_bytes())


def _client_tls(pki: Path) -> ssl.SSLContext:
    from skupper.certs.tls import client_context

    return client_context((pki / "ca.crt").read_bytes(),
                          cert_pem=(pki / "client.crt").read_bytes(),
                          key_pem=(pki / "client.key").read_bytes())


async def _serve(pki: Path) -> None:
    _raise_nofile()
    loop = asyncio.get_running_loop()
    tls = _server_tls(pki)
    servers = {
        "sink": await loop.create_server(_Sink, LOOPBACK, 0, backlog=2048),
        "echo": await loop.create_server(_Echo, LOOPBACK, 0, backlog=2048),
        "tls-sink": await loop.create_server(_Sink, LOOPBACK, 0, ssl=tls, backlog=2048),
        "tls-echo": await loop.create_server(_Echo, LOOPBACK, 0, ssl=tls, backlog=2048),
    }
    ports = {name: s.sockets[0].getsockname()[1] for name, s in servers.items()}
    print(json.dumps(ports), flush=True)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(loop.create_future(), SERVER_LIFETIME_SECONDS)


# --- the client process -------------------------------------------------------------------


async def _open(port: int, tls: ssl.SSLContext | None) -> tuple[Any, Any]:
    return await asyncio.open_connection(LOOPBACK, port, ssl=tls,
                                         server_hostname=LOOPBACK if tls else None,
                                         limit=MIB)


async def _throughput(port: int, tls: ssl.SSLContext | None, streams: int, mib: int) -> float:
    per_stream = mib * MIB // streams
    block = memoryview(b"x" * CHUNK)
    conns = [await _open(port, tls) for _ in range(streams)]

    async def send(reader: Any, writer: Any) -> None:
        writer.write(per_stream.to_bytes(8, "big"))
        left = per_stream
        while left > 0:
            n = min(CHUNK, left)
            writer.write(block[:n])
            left -= n
            await writer.drain()
        assert await reader.readexactly(1) == b"!"

    started = time.perf_counter()
    async with asyncio.timeout(TRANSFER_CAP_SECONDS):
        await asyncio.gather(*(send(r, w) for r, w in conns))
    elapsed = time.perf_counter() - started
    for _, writer in conns:
        writer.close()
    return per_stream * streams / elapsed / 1e6  # MB/s


async def _latency(port: int, tls: ssl.SSLContext | None, requests: int) -> list[float]:
    reader, writer = await _open(port, tls)
    payload = b"r" * ECHO_SIZE
    samples = []
    async with asyncio.timeout(TRANSFER_CAP_SECONDS):
        for i in range(requests + 50):
            started = time.perf_counter()
            writer.write(payload)
            await reader.readexactly(ECHO_SIZE)
            if i >= 50:  # warm-up round trips are not counted
                samples.append((time.perf_counter() - started) * 1e6)
    writer.close()
    return samples


async def _idle(port: int, count: int) -> None:
    conns = []
    async with asyncio.timeout(60):
        for _ in range(count):
            reader, writer = await _open(port, None)
            writer.write(b"i")
            conns.append((reader, writer))
        for reader, _ in conns:  # every connection is spliced end to end
            await reader.readexactly(1)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for _, writer in conns:
        writer.close()


def _client(args: argparse.Namespace) -> None:
    _raise_nofile()
    tls = _client_tls(Path(args.pki)) if args.tls else None
    if args.test == "throughput":
        result: Any = asyncio.run(_throughput(args.port, tls, args.streams, args.mib))
    elif args.test == "latency":
        result = asyncio.run(_latency(args.port, tls, args.requests))
    else:
        asyncio.run(_idle(args.port, args.count))
        return
    print(json.dumps(result))


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))


# --- the orchestration ---------------------------------------------------------------------


def _pki(folder: Path) -> None:
    from skupper.certs.issue import generate_ca, issue_certificate

    ca = generate_ca("bench CA")
    server = issue_certificate(ca, "127.0.0.1", usage="server", hosts=[LOOPBACK])
    client = issue_certificate(ca, "bench client", usage="client")
    for name, data in (("ca.crt", ca.cert_pem), ("server.crt", server.cert_pem),
                       ("server.key", server.key_pem), ("client.crt", client.cert_pem),
                       ("client.key", client.key_pem)):
        (folder / name).write_bytes(data)
        (folder / name).chmod(0o600)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _run_client(h: Hermetic, pki: Path, port: int, *extra: str, tls: bool = False) -> Any:
    argv = [PYTHON, __file__, "--role", "client", "--pki", str(pki), "--port", str(port),
            *extra]
    if tls:
        argv.append("--tls")
    done = subprocess.run(argv, env=h.env, capture_output=True, text=True,
                          timeout=TRANSFER_CAP_SECONDS + 30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"client {extra} on port {port} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout)


def _stunnel(h: Hermetic, pki: Path, work: Path, ports: dict[str, int]) -> dict[str, int]:
    """Two stunnel4 processes, client side and server side, for the sink and the echo."""
    front = {name: _free_port() for name in ("sink", "echo")}
    middle = {name: _free_port() for name in ("sink", "echo")}
    common = ("foreground = yes\npid =\ndebug = 3\nsslVersionMin = TLSv1.3\n"
              f"CAfile = {pki / 'ca.crt'}\nverifyChain = yes\n")
    client = common + "client = yes\n" + f"cert = {pki / 'client.crt'}\n" \
        f"key = {pki / 'client.key'}\n"
    server = common + f"cert = {pki / 'server.crt'}\nkey = {pki / 'server.key'}\n"
    for name in front:
        client += f"[{name}]\naccept = {LOOPBACK}:{front[name]}\n" \
                  f"connect = {LOOPBACK}:{middle[name]}\n"
        server += f"[{name}]\naccept = {LOOPBACK}:{middle[name]}\n" \
                  f"connect = {LOOPBACK}:{ports[name]}\n"
    for side, text in (("client", client), ("server", server)):
        conf = work / f"stunnel-{side}.conf"
        conf.write_text(text)
        h.spawn([str(STUNNEL), str(conf)], stdout=subprocess.DEVNULL,
                stderr=open(work / f"stunnel-{side}.log", "wb"))  # noqa: SIM115
    deadline = time.monotonic() + 10
    for port in list(front.values()) + list(middle.values()):
        while not _listening(port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"stunnel did not listen on {port}: see {work}")
            time.sleep(0.05)
    return front


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex((LOOPBACK, port)) == 0


def _sites(h: Hermetic, work: Path, ports: dict[str, int]) -> dict[str, dict[str, int]]:
    """Sites a, b, c linked a - b - c; listeners at a for connectors at b and at c."""
    h.skupper("site", "create", "a", "-n", "a", "--enable-link-access")
    h.skupper("site", "create", "b", "-n", "b", "--enable-link-access")
    h.skupper("site", "create", "c", "-n", "c")
    for issuer, redeemer in (("a", "b"), ("b", "c")):
        token = work / f"{issuer}-{redeemer}.yaml"
        h.skupper("access-token", "issue", str(token), "-n", issuer)
        h.skupper("access-token", "redeem", str(token), "-n", redeemer)
    paths: dict[str, dict[str, int]] = {"1 link": {}, "2 links": {}}
    for label, far in (("1 link", "b"), ("2 links", "c")):
        for service in ("sink", "echo"):
            key = f"{service}-{far}"
            h.skupper("connector", "create", key, str(ports[service]), "-n", far)
            port = _free_port()
            h.skupper("listener", "create", key, str(port), "--host", LOOPBACK, "-n", "a",
                      "--wait", "ready", "--timeout", "30s")
            paths[label][service] = port
    return paths


# Loaded by the uncounted sites' daemons (PYTHONPATH): TcpSide without its byte counters.
_UNCOUNTED = '''
from skupper.router import bridge


def data_received(self, data):
    if not self.peer_ready:
        self._early.append(data)
        return
    if not self.peer.deliver(data) and self.transport is not None:
        self.transport.pause_reading()


def deliver(self, data):
    if self.dead or self.transport is None:
        return True
    self.transport.write(data)
    return not self._write_paused


bridge.TcpSide.data_received = data_received
bridge.TcpSide.deliver = deliver
'''


def _pair(h: Hermetic, work: Path, ports: dict[str, int], first: str, second: str,
          *, counting: bool) -> dict[str, int]:
    """Sites first -> second alone (one link, one listener, one connector per service),
    their daemons with or without the bridge's byte counting: two such pairs differ in
    nothing else."""
    saved = dict(h.env)
    if not counting:
        patch = work / "uncounted"
        patch.mkdir(mode=0o700, exist_ok=True)
        (patch / "sitecustomize.py").write_text(_UNCOUNTED)
        h.env["PYTHONPATH"] = str(patch)
    try:
        h.skupper("site", "create", first, "-n", first, "--enable-link-access")
        h.skupper("site", "create", second, "-n", second)
        token = work / f"{first}-{second}.yaml"
        h.skupper("access-token", "issue", str(token), "-n", first)
        h.skupper("access-token", "redeem", str(token), "-n", second)
        out: dict[str, int] = {}
        for service in ("sink", "echo"):
            key = f"{service}-{second}"
            h.skupper("connector", "create", key, str(ports[service]), "-n", second)
            port = _free_port()
            h.skupper("listener", "create", key, str(port), "--host", LOOPBACK, "-n", first,
                      "--wait", "ready", "--timeout", "30s")
            out[service] = port
    finally:
        h.env.clear()
        h.env.update(saved)
    return out


def _rss_kib(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+)", text)
    return int(match.group(1)) if match else 0


def _idle_memory(h: Hermetic, pki: Path, port: int, count: int) -> dict[str, float]:
    pids = {ns: h.daemon_pid(ns) for ns in ("a", "b", "c")}
    before = {ns: _rss_kib(pid) for ns, pid in pids.items()}
    child = subprocess.Popen(
        [PYTHON, __file__, "--role", "client", "--pki", str(pki), "--port", str(port),
         "--test", "idle", "--count", str(count)],
        env=h.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdin is not None
        line = child.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError("the idle client failed")
        time.sleep(1.0)
        after = {ns: _rss_kib(pid) for ns, pid in pids.items()}
        child.stdin.write("\n")
        child.stdin.flush()
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(5)
    return {ns: (after[ns] - before[ns]) / count for ns in pids}


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=("bench", "server", "client"), default="bench")
    parser.add_argument("--pki", default="")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tls", action="store_true")
    parser.add_argument("--test", choices=("throughput", "latency", "idle"),
                        default="throughput")
    parser.add_argument("--streams", type=int, default=1)
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="small sizes, one round")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--metrics-cost", action="store_true",
                        help="also run a link whose daemons do not count bytes")
    args = parser.parse_args()
    if args.role == "server":
        asyncio.run(_serve(Path(args.pki)))
        return 0
    if args.role == "client":
        _client(args)
        return 0
    if args.quick:
        args.rounds, args.mib, args.requests, args.idle = 1, 64, 500, 200
    _raise_nofile()
    with hermetic("skupper-bench-services-", keep=args.keep) as h:
        return _bench(h, args)


def _bench(h: Hermetic, args: argparse.Namespace) -> int:
    work = h.home / "bench"
    work.mkdir(mode=0o700)
    pki = work / "pki"
    pki.mkdir(mode=0o700)
    _pki(pki)
    server = h.spawn([PYTHON, __file__, "--role", "server", "--pki", str(pki)],
                     stdout=subprocess.PIPE)
    assert server.stdout is not None
    ports: dict[str, int] = json.loads(server.stdout.readline())
    print("server ports:", ports, file=sys.stderr)
    paths: dict[str, tuple[dict[str, int], bool]] = {
        "direct": ({"sink": ports["sink"], "echo": ports["echo"]}, False),
        "bare asyncio TLS": ({"sink": ports["tls-sink"], "echo": ports["tls-echo"]}, True),
    }
    if STUNNEL:
        paths["stunnel"] = (_stunnel(h, pki, work, ports), False)
    else:
        print("stunnel4 not installed: its column is skipped", file=sys.stderr)
    print("creating sites a, b, c ...", file=sys.stderr)
    for label, service_ports in _sites(h, work, ports).items():
        paths[label] = (service_ports, False)
    if args.metrics_cost:
        paths["1 link, counted"] = (_pair(h, work, ports, "d", "e", counting=True), False)
        paths["1 link, uncounted"] = (_pair(h, work, ports, "f", "g", counting=False), False)

    results: dict[str, dict[str, list[float]]] = {p: {} for p in paths}
    for round_no in range(args.rounds):
        for label, (service_ports, tls) in paths.items():
            got = results[label]
            one = _run_client(h, pki, service_ports["sink"], "--test", "throughput",
                              "--streams", "1", "--mib", str(args.mib), tls=tls)
            many = _run_client(h, pki, service_ports["sink"], "--test", "throughput",
                               "--streams", "16", "--mib", str(args.mib), tls=tls)
            lat = _run_client(h, pki, service_ports["echo"], "--test", "latency",
                              "--requests", str(args.requests), tls=tls)
            got.setdefault("one", []).append(one)
            got.setdefault("sixteen", []).append(many)
            got.setdefault("p50", []).append(_pct(lat, 0.50))
            got.setdefault("p99", []).append(_pct(lat, 0.99))
            print(f"round {round_no + 1} {label}: 1 stream {one:.0f} MB/s, 16 streams "
                  f"{many:.0f} MB/s, p50 {_pct(lat, 0.5):.0f} us, p99 {_pct(lat, 0.99):.0f} us",
                  file=sys.stderr)
    memory = _idle_memory(h, pki, paths["2 links"][0]["echo"], args.idle)
    _report(results, memory, args)
    return 0


def _report(results: dict[str, dict[str, list[float]]], memory: dict[str, float],
            args: argparse.Namespace) -> None:
    med = {label: {k: statistics.median(v) for k, v in got.items()}
           for label, got in results.items()}
    direct = med["direct"]["p50"]
    print("| path | 1 stream MB/s | 16 streams MB/s | p50 µs | p99 µs | p50 added µs |")
    print("|---|---|---|---|---|---|")
    for label, m in med.items():
        added = "-" if label == "direct" else f"{m['p50'] - direct:.0f}"
        print(f"| {label} | {m['one']:.0f} | {m['sixteen']:.0f} | {m['p50']:.0f} | "
              f"{m['p99']:.0f} | {added} |")
    print()
    link = med["1 link"]
    bare = med["bare asyncio TLS"]
    print(f"1 link, one stream: {link['one'] / bare['one']:.0%} of the bare asyncio TLS pipe "
          "(target >= 70%)", end="")
    if "stunnel" in med:
        st = med["stunnel"]
        print(f", {link['one'] / st['one']:.0%} of stunnel (target >= 50%); p50 added "
              f"{link['p50'] - direct:.0f} us vs stunnel's {st['p50'] - direct:.0f} us "
              f"({(link['p50'] - direct) / max(st['p50'] - direct, 1e-9):.1f}x, "
              "target <= 2x)")
    else:
        print()
    if "1 link, uncounted" in med:
        counted, plain = med["1 link, counted"], med["1 link, uncounted"]
        print(f"metrics' cost (two like pairs of sites): counting {counted['one']:.0f} MB/s "
              f"vs uncounted {plain['one']:.0f} MB/s one stream "
              f"({counted['one'] / plain['one']:.1%}), "
              f"{counted['sixteen'] / plain['sixteen']:.1%} with 16 streams (target >= 97%)")
    print("memory per idle connection (2 links, RSS growth / connections): " + ", ".join(
        f"site {ns} {kib:.1f} KiB" for ns, kib in memory.items()) + " (target <= 16 KiB)")
    print(f"\n{args.rounds} rounds (medians), {args.mib} MiB per throughput run, "
          f"{args.requests} round trips of {ECHO_SIZE} bytes, {args.idle} idle connections")
    for line in machine_info():
        print(line)


if __name__ == "__main__":
    sys.exit(main())
