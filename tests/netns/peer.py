"""Clients and servers the network tests run inside a test host (``ip netns exec``).

Standard library only. It connects only to loopback and to the test hosts' addresses
(``SKUPPER_TEST_HOSTS``, comma separated): the same guard as the tests' own process.

  serve-echo HOST PORT            echo every byte back
  serve-sink HOST PORT            read to EOF, answer "<sha256> <bytes>"
  send HOST PORT BYTES [SEED]     send seeded random bytes, check the sink's answer;
                                  prints {"bytes", "seconds", "mb_per_s"}
  serve-framed HOST PORT          per transfer: read an 8-byte length and that many
                                  bytes, answer "<sha256> <bytes>"; many per connection
  send-framed HOST PORT BYTES N   N transfers over one connection to serve-framed;
                                  prints {"mb_per_s": [each transfer's]}
  rtt HOST PORT COUNT             COUNT 64-byte round trips over an echo server;
                                  prints {"median_ms", "p90_ms"}
  hold HOST PORT SECONDS          a connection kept busy with one byte every 0.2 s;
                                  prints how and when it ended
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import random
import socket
import socketserver
import statistics
import struct
import sys
import threading
import time

CHUNK = 256 * 1024
ALLOWED = {h for h in os.environ.get("SKUPPER_TEST_HOSTS", "").split(",") if h}


def _guard(address: object) -> None:
    host = str(address[0]) if isinstance(address, tuple) and address else str(address)
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    if host not in ALLOWED:
        raise PermissionError(f"test peers may only connect to loopback and the test "
                              f"hosts, not {host}")


_connect = socket.socket.connect


def _guarded_connect(self: socket.socket, address: object) -> None:
    _guard(address)
    _connect(self, address)  # type: ignore[arg-type]


socket.socket.connect = _guarded_connect  # type: ignore[method-assign]


def connect(host: str, port: int, timeout: float = 30.0) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve(host: str, port: int, handle: object) -> None:
    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.settimeout(120)
            with contextlib.suppress(OSError):
                handle(self.request)  # type: ignore[operator]

    with _Server((host, port), Handler) as server:
        server.serve_forever(poll_interval=0.1)


def echo(sock: socket.socket) -> None:
    while data := sock.recv(CHUNK):
        sock.sendall(data)


def sink(sock: socket.socket) -> None:
    digest = hashlib.sha256()
    total = 0
    while data := sock.recv(CHUNK):
        digest.update(data)
        total += len(data)
    sock.sendall(f"{digest.hexdigest()} {total}\n".encode())


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    parts, got = [], 0
    while got < size:
        chunk = sock.recv(min(CHUNK, size - got))
        if not chunk:
            raise ConnectionError("closed mid-transfer")
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def framed_sink(sock: socket.socket) -> None:
    while header := sock.recv(8, socket.MSG_WAITALL):
        (size,) = struct.unpack("!Q", header)
        digest = hashlib.sha256()
        left = size
        while left:
            data = sock.recv(min(CHUNK, left))
            if not data:
                return
            digest.update(data)
            left -= len(data)
        sock.sendall(f"{digest.hexdigest()} {size}\n".encode())


def send_framed(host: str, port: int, size: int, count: int) -> dict[str, list[float]]:
    """``count`` transfers over one warm connection: TCP's window already open."""
    rates = []
    with connect(host, port, timeout=120) as sock:
        for seed in range(count):
            payload = random.Random(seed).randbytes(size)
            expected = f"{hashlib.sha256(payload).hexdigest()} {size}\n".encode()
            started = time.monotonic()
            sock.sendall(struct.pack("!Q", size))
            view = memoryview(payload)
            for offset in range(0, size, CHUNK):
                sock.sendall(view[offset:offset + CHUNK])
            answer = _read_exactly(sock, len(expected))
            rates.append(size / (time.monotonic() - started) / 1e6)
            if answer != expected:
                raise SystemExit(f"corrupted: sent {expected!r}, the sink saw {answer!r}")
    return {"mb_per_s": rates}


def send(host: str, port: int, size: int, seed: int) -> dict[str, float]:
    payload = random.Random(seed).randbytes(size)
    expected = f"{hashlib.sha256(payload).hexdigest()} {size}"
    with connect(host, port, timeout=120) as sock:
        started = time.monotonic()
        view = memoryview(payload)
        for offset in range(0, size, CHUNK):
            sock.sendall(view[offset:offset + CHUNK])
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
        seconds = time.monotonic() - started
    if answer.decode().strip() != expected:
        raise SystemExit(f"corrupted: sent {expected}, the sink saw {answer[:200]!r}")
    return {"bytes": size, "seconds": seconds, "mb_per_s": size / seconds / 1e6}


def rtt(host: str, port: int, count: int) -> dict[str, float]:
    samples = []
    message = b"x" * 64
    with connect(host, port) as sock:
        for _ in range(count):
            started = time.perf_counter()
            sock.sendall(message)
            got = b""
            while len(got) < len(message):
                chunk = sock.recv(4096)
                if not chunk:
                    raise SystemExit("the echo server closed the connection")
                got += chunk
            samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {"median_ms": statistics.median(samples),
            "p90_ms": samples[int(len(samples) * 0.9) - 1], "count": count}


def hold(host: str, port: int, seconds: float) -> dict[str, object]:
    started = time.monotonic()
    try:
        sock = connect(host, port)
    except OSError as exc:
        return {"ended": "connect-failed", "error": str(exc), "after": 0.0}
    sock.settimeout(0.2)
    sent = received = 0
    print(json.dumps({"connected": True}), flush=True)
    try:
        while time.monotonic() - started < seconds:
            try:
                sock.sendall(b".")
                sent += 1
                data = sock.recv(4096)
                if not data:
                    return {"ended": "eof", "after": time.monotonic() - started,
                            "sent": sent, "received": received}
                received += len(data)
            except TimeoutError:
                pass
            time.sleep(0.2)
    except ConnectionResetError:
        return {"ended": "reset", "after": time.monotonic() - started, "sent": sent,
                "received": received}
    except OSError as exc:
        return {"ended": f"error: {exc}", "after": time.monotonic() - started}
    finally:
        sock.close()
    return {"ended": "timeout", "after": time.monotonic() - started, "sent": sent,
            "received": received}


def main(argv: list[str]) -> int:
    command, host, port, *rest = argv
    if command == "serve-echo":
        serve(host, int(port), echo)
    elif command == "serve-sink":
        serve(host, int(port), sink)
    elif command == "serve-framed":
        serve(host, int(port), framed_sink)
    elif command == "send-framed":
        print(json.dumps(send_framed(host, int(port), int(rest[0]), int(rest[1]))))
    elif command == "send":
        seed = int(rest[1]) if len(rest) > 1 else 1
        print(json.dumps(send(host, int(port), int(rest[0]), seed)))
    elif command == "rtt":
        print(json.dumps(rtt(host, int(port), int(rest[0]))))
    elif command == "hold":
        print(json.dumps(hold(host, int(port), float(rest[0]))), flush=True)
    else:
        raise SystemExit(f"unknown command {command}")
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "peer"
    sys.exit(main(sys.argv[1:]))
