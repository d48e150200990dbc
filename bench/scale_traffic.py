"""The load of bench_scale.py: one selector-based server, one selector-based client.

    python bench/scale_traffic.py server                    # prints {"sink": port, "echo": port}
    python bench/scale_traffic.py load-client --port P --count N --cap-mib M

The server is a counting sink (on a "mark" line on stdin it prints every sink
connection's byte count so far; at a connection's end it answers with the bytes it got)
and an echo. The client opens N connections, says "connected", and on "go" sends on all
of them as fast as each socket takes bytes (at most M MiB each) until "stop"; then it
half-closes each, checks the sink's count against what it sent, and prints the tally.
Loopback only; every wait is bounded.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import selectors
import socket
import sys
import time

LOOPBACK = "127.0.0.1"
OPEN_FILES_WANTED = 20000
BLOCK = 64 * 1024
SERVER_LIFETIME_SECONDS = 1800.0
WAIT_SECONDS = 300.0


# --- the server process: a counting sink and an echo, one selector ------------------------


class _Server:
    def __init__(self) -> None:
        self.sel = selectors.DefaultSelector()
        self.counts: dict[int, int] = {}  # sink connection id -> bytes received
        self.next_id = 0
        self.buf = bytearray(1024 * 1024)
        self.stdin = b""

    def listen(self, kind: str) -> int:
        listener = socket.create_server((LOOPBACK, 0), backlog=4096)
        listener.setblocking(False)
        self.sel.register(listener, selectors.EVENT_READ, ("accept", kind))
        return int(listener.getsockname()[1])

    def run(self) -> None:
        self.sel.register(sys.stdin.fileno(), selectors.EVENT_READ, ("stdin", None))
        deadline = time.monotonic() + SERVER_LIFETIME_SECONDS
        while time.monotonic() < deadline:
            for key, _ in self.sel.select(timeout=1.0):
                what, extra = key.data
                if what == "accept":
                    self._accept(key.fileobj, extra)  # type: ignore[arg-type]
                elif what == "sink":
                    self._sink(key.fileobj, extra)  # type: ignore[arg-type]
                elif what == "echo":
                    self._echo(key.fileobj)  # type: ignore[arg-type]
                elif not self._command():
                    return

    def _accept(self, listener: socket.socket, kind: str) -> None:
        for _ in range(256):  # a bounded batch per wake-up
            try:
                conn, _ = listener.accept()
            except BlockingIOError:
                return
            conn.setblocking(False)
            if kind == "sink":
                self.next_id += 1
                self.counts[self.next_id] = 0
                self.sel.register(conn, selectors.EVENT_READ, ("sink", self.next_id))
            else:
                self.sel.register(conn, selectors.EVENT_READ, ("echo", None))

    def _sink(self, conn: socket.socket, conn_id: int) -> None:
        try:
            n = conn.recv_into(self.buf)
        except BlockingIOError:
            return
        except OSError:
            n = 0
        if n:
            self.counts[conn_id] += n
            return
        # End of the client's stream: say how much arrived, then close.
        self.sel.unregister(conn)
        total = self.counts.pop(conn_id)
        try:
            conn.setblocking(True)
            conn.settimeout(10)
            conn.sendall(total.to_bytes(8, "big"))
        except OSError:
            pass
        conn.close()

    def _echo(self, conn: socket.socket) -> None:
        try:
            data = conn.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.sel.unregister(conn)
            conn.close()
            return
        conn.setblocking(True)  # echoes here are a byte or two: never a long wait
        conn.settimeout(10)
        conn.sendall(data)
        conn.setblocking(False)

    def _command(self) -> bool:
        data = os.read(sys.stdin.fileno(), 4096)
        if not data:
            return False
        self.stdin += data
        while b"\n" in self.stdin:
            line, self.stdin = self.stdin.split(b"\n", 1)
            if line.strip() == b"mark":
                print(json.dumps({"t": time.monotonic(), "counts": self.counts}), flush=True)
        return True


def _serve() -> None:
    raise_own_limit()
    server = _Server()
    print(json.dumps({"sink": server.listen("sink"), "echo": server.listen("echo")}),
          flush=True)
    server.run()


# --- the load client: many connections sending at once, one selector ---------------------


def _load_client(port: int, count: int, cap_bytes: int) -> None:
    raise_own_limit()
    conns = []
    for _ in range(count):
        sock = socket.create_connection((LOOPBACK, port), timeout=30)
        sock.setblocking(False)
        conns.append(sock)
    print("connected", flush=True)
    sys.stdin.readline()  # "go"
    sel = selectors.DefaultSelector()
    sent = [0] * count
    for i, sock in enumerate(conns):
        sel.register(sock, selectors.EVENT_WRITE, i)
    sel.register(sys.stdin.fileno(), selectors.EVENT_READ, -1)
    block = memoryview(b"s" * BLOCK)
    deadline = time.monotonic() + WAIT_SECONDS
    running = True
    while running and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=1.0):
            i = key.data
            if i < 0:
                running = False  # "stop"
                break
            try:
                sent[i] += conns[i].send(block[:min(BLOCK, cap_bytes - sent[i])])
            except BlockingIOError:
                continue
            if sent[i] >= cap_bytes:
                sel.unregister(conns[i])
    sel.close()
    completed = 0
    for i, sock in enumerate(conns):  # each sink answers with the bytes it received
        sock.setblocking(True)
        sock.settimeout(60)
        sock.shutdown(socket.SHUT_WR)
        answer = _recv_exact(sock, 8)
        if answer is not None and int.from_bytes(answer, "big") == sent[i]:
            completed += 1
        sock.close()
    print(json.dumps({"connections": count, "completed": completed, "sent": sum(sent)}),
          flush=True)


def _recv_exact(sock: socket.socket, count: int) -> bytes | None:
    data = b""
    while len(data) < count:
        try:
            part = sock.recv(count - len(data))
        except OSError:
            return None
        if not part:
            return None
        data += part
    return data


def raise_own_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = OPEN_FILES_WANTED if hard == resource.RLIM_INFINITY else min(hard,
                                                                         OPEN_FILES_WANTED)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=("server", "load-client"))
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--cap-mib", type=int, default=0)
    args = parser.parse_args()
    if args.role == "server":
        _serve()
    else:
        _load_client(args.port, args.count, args.cap_mib * 1024 * 1024)
    return 0


if __name__ == "__main__":
    sys.exit(main())
