"""The load generator of bench_services.py: blocking-socket clients, threaded servers.

    python bench/traffic.py server --pki DIR      # prints {"sink": port, "echo": ..., ...}
    python bench/traffic.py client --test throughput|latency|connrate|idle --port P
                                   [--tls --pki DIR] [--streams N] [--mib N] ...

Every path of the bench is loaded by these same two programs, so a difference between
paths is the path's, not the load generator's. They are plain ``socket`` (and ``ssl``)
calls: the server runs one thread per connection, the client one thread per stream or
per concurrent client. Nothing here knows about skupper except the bench's PKI helpers.

Protocols: a sink connection carries an 8-byte big-endian length and that many bytes;
the server answers ``!`` when all arrived (and reads the next length). An echo
connection returns every byte it receives. Loopback only; every wait has a timeout.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import resource
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

LOOPBACK = "127.0.0.1"
MIB = 1024 * 1024
CHUNK = 256 * 1024
ECHO_SIZE = 64
WARM_UP_ROUND_TRIPS = 50
WARM_UP_CONNECTIONS = 8
SERVER_LIFETIME_SECONDS = 1800.0
DEFAULT_CAP_SECONDS = 30.0
# Per-connection server threads need little stack; 1000s of idle ones stay cheap.
THREAD_STACK_BYTES = 256 * 1024


def raise_open_files_limit(want: int = 65536) -> int:
    """Soft RLIMIT_NOFILE up to ``want`` (never past the hard limit); returns the new soft."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = max(soft, want if hard == resource.RLIM_INFINITY else min(hard, want))
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def server_tls(pki: Path) -> ssl.SSLContext:
    from skupper.certs.tls import server_context

    return server_context((pki / "server.crt").read_bytes(), (pki / "server.key").read_bytes(),
                          client_ca_pem=(pki / "ca.crt").read_bytes())


def client_tls(pki: Path) -> ssl.SSLContext:
    from skupper.certs.tls import client_context

    return client_context((pki / "ca.crt").read_bytes(),
                          cert_pem=(pki / "client.crt").read_bytes(),
                          key_pem=(pki / "client.key").read_bytes())


def recv_exact(sock: socket.socket, count: int) -> bytes | None:
    """``count`` bytes, or None at an end of stream before them."""
    parts, got = [], 0
    while got < count:
        data = sock.recv(count - got)
        if not data:
            return None
        parts.append(data)
        got += len(data)
    return b"".join(parts)


# --- the server process -------------------------------------------------------------------


def _sink(conn: socket.socket) -> None:
    view = memoryview(bytearray(MIB))
    while (head := recv_exact(conn, 8)) is not None:
        left = int.from_bytes(head, "big")
        while left > 0:
            n = conn.recv_into(view, min(len(view), left))
            if n == 0:
                return
            left -= n
        conn.sendall(b"!")


def _echo(conn: socket.socket) -> None:
    while data := conn.recv(65536):
        conn.sendall(data)


def _serve_one(raw: socket.socket, handler: Callable[[socket.socket], None],
               tls: ssl.SSLContext | None) -> None:
    try:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = tls.wrap_socket(raw, server_side=True) if tls else raw
        with conn:
            handler(conn)
    except OSError:
        pass  # a client that resets or goes away ends its connection, nothing else
    finally:
        raw.close()


def _accept_forever(listener: socket.socket, handler: Callable[[socket.socket], None],
                    tls: ssl.SSLContext | None) -> None:
    while True:
        raw, _ = listener.accept()
        threading.Thread(target=_serve_one, args=(raw, handler, tls), daemon=True).start()


def serve(pki: Path) -> None:
    raise_open_files_limit()
    threading.stack_size(THREAD_STACK_BYTES)
    tls = server_tls(pki)
    ports = {}
    for name, handler, context in (("sink", _sink, None), ("echo", _echo, None),
                                   ("tls-sink", _sink, tls), ("tls-echo", _echo, tls)):
        listener = socket.create_server((LOOPBACK, 0), backlog=4096)
        ports[name] = listener.getsockname()[1]
        threading.Thread(target=_accept_forever, args=(listener, handler, context),
                         daemon=True).start()
    print(json.dumps(ports), flush=True)
    time.sleep(SERVER_LIFETIME_SECONDS)  # bounded: the bench stops it by pid long before


# --- the client process -------------------------------------------------------------------


class Client:
    """Opens connections to one port, plain or TLS, with a time cap on every socket call."""

    def __init__(self, port: int, tls: ssl.SSLContext | None, cap: float) -> None:
        self.port, self.tls, self.cap = port, tls, cap

    def connect(self) -> socket.socket:
        raw = socket.create_connection((LOOPBACK, self.port), timeout=self.cap)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls is None:
            return raw
        return self.tls.wrap_socket(raw, server_hostname=LOOPBACK)


def _in_threads(count: int, work: Callable[[int], None]) -> float:
    """Runs ``work(i)`` in ``count`` threads released together; seconds until all ended."""
    errors: list[BaseException] = []
    start = threading.Barrier(count + 1)

    def run(i: int) -> None:
        try:
            start.wait()
            work(i)
        except BaseException as error:  # reported below, in the main thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    start.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{len(errors)} of {count} threads failed: {errors[0]!r}")
    return elapsed


def throughput(client: Client, streams: int, mib: int) -> float:
    """MB/s of ``mib`` MiB split over ``streams`` connections, opened before the clock."""
    per_stream = mib * MIB // streams
    block = memoryview(b"x" * CHUNK)
    conns = [client.connect() for _ in range(streams)]

    def send(i: int) -> None:
        sock = conns[i]
        sock.sendall(per_stream.to_bytes(8, "big"))
        left = per_stream
        while left > 0:
            n = min(CHUNK, left)
            sock.sendall(block[:n])
            left -= n
        if sock.recv(1) != b"!":
            raise RuntimeError("the sink did not confirm the transfer")

    try:
        elapsed = _in_threads(streams, send)
    finally:
        for sock in conns:
            sock.close()
    return per_stream * streams / elapsed / 1e6


def latency(client: Client, requests: int) -> list[float]:
    """Microseconds of each 64-byte echo round trip on one connection (after a warm-up)."""
    payload = b"r" * ECHO_SIZE
    samples = []
    with client.connect() as sock:
        for i in range(requests + WARM_UP_ROUND_TRIPS):
            started = time.perf_counter_ns()
            sock.sendall(payload)
            if recv_exact(sock, ECHO_SIZE) != payload:
                raise RuntimeError("the echo answered something else")
            if i >= WARM_UP_ROUND_TRIPS:
                samples.append((time.perf_counter_ns() - started) / 1e3)
    return samples


def connection_rate(client: Client, clients: int, total: int) -> float:
    """Connections per second: ``clients`` threads each connecting, echoing 64 bytes and
    closing, ``total`` connections in all (after one untimed connection per thread)."""
    payload = b"c" * ECHO_SIZE

    def once() -> None:
        with client.connect() as sock:
            sock.sendall(payload)
            if recv_exact(sock, ECHO_SIZE) != payload:
                raise RuntimeError("the echo answered something else")

    _in_threads(WARM_UP_CONNECTIONS, lambda _i: once())
    tickets = itertools.count()  # next() on it is atomic under the GIL

    def work(_i: int) -> None:
        while next(tickets) < total:
            once()

    return total / _in_threads(clients, work)


def idle(client: Client, count: int) -> None:
    """Holds ``count`` connections, each spliced end to end (one byte echoed); says
    ``ready``, waits for a line on stdin, checks every connection echoes once more."""
    conns = []
    for _ in range(count):
        sock = client.connect()
        sock.sendall(b"i")
        conns.append(sock)
    for sock in conns:
        if sock.recv(1) != b"i":
            raise RuntimeError("an idle connection was not spliced")
    print("ready", flush=True)
    sys.stdin.readline()
    for sock in conns:
        sock.sendall(b"e")
    echoed = sum(1 for sock in conns if sock.recv(1) == b"e")
    for sock in conns:
        sock.close()
    print(json.dumps({"held": count, "echoed": echoed}), flush=True)


def run_client(args: argparse.Namespace) -> None:
    raise_open_files_limit()
    client = Client(args.port, client_tls(Path(args.pki)) if args.tls else None, args.cap)
    if args.test == "throughput":
        print(json.dumps(throughput(client, args.streams, args.mib)))
    elif args.test == "latency":
        print(json.dumps(latency(client, args.requests)))
    elif args.test == "connrate":
        print(json.dumps(connection_rate(client, args.clients, args.total)))
    else:
        idle(client, args.count)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=("server", "client"))
    parser.add_argument("--pki", default="")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tls", action="store_true")
    parser.add_argument("--test", choices=("throughput", "latency", "connrate", "idle"),
                        default="throughput")
    parser.add_argument("--streams", type=int, default=1)
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--total", type=int, default=400)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--cap", type=float, default=DEFAULT_CAP_SECONDS,
                        help="seconds any one socket call may wait")
    args = parser.parse_args()
    # skupper.certs comes from the venv the bench runs with (its src/ is installed there).
    if args.role == "server":
        serve(Path(args.pki))
    else:
        run_client(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
