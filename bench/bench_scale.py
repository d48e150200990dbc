"""Benchmark: the scale of one link (issue 14, point 5).

    .venv/bin/python bench/bench_scale.py [--quick] [--connections 1000] [--seconds 10]
        [--idle 5000] [--daemon-nofile 1024] [--profile DIR] [--keep]

Sites a and b, one link; a listener at a, a connector at b for a selector-based server
(one process: a counting sink and an echo). Two figures:

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
most 20000 (this sandbox's hard limit).

Loopback only; every wait has a timeout; every process is stopped by pid at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import selectors
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import LOOPBACK, PYTHON, Hermetic, hermetic, machine_info
from profiles import Profiler
from service_sites import expose, link, open_fds, open_files_limit, rss_kib

TRAFFIC = str(Path(__file__).resolve().parent / "traffic.py")
OPEN_FILES_WANTED = 20000
BLOCK = 64 * 1024
SERVER_LIFETIME_SECONDS = 1800.0
WAIT_SECONDS = 300.0
WARM_UP_SECONDS = 2.0
ALL_REACHED_SECONDS = 60.0


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
    _raise_own_limit()
    server = _Server()
    print(json.dumps({"sink": server.listen("sink"), "echo": server.listen("echo")}),
          flush=True)
    server.run()


# --- the load client: many connections sending at once, one selector ---------------------


def _load_client(port: int, count: int, cap_bytes: int) -> None:
    _raise_own_limit()
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


def _raise_own_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = OPEN_FILES_WANTED if hard == resource.RLIM_INFINITY else min(hard,
                                                                         OPEN_FILES_WANTED)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))


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
    client = _spawn(h, [PYTHON, __file__, "--role", "load-client", "--port", str(port),
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
    server = _spawn(h, [PYTHON, __file__, "--role", "server"])
    ports = json.loads(_line(server, 30, "the server's ports"))
    with _soft_limit(args.daemon_nofile):
        h.skupper("site", "create", "a", "-n", "a", "--enable-link-access")
        h.skupper("site", "create", "b", "-n", "b")
    link(h, work, "a", "b")
    listen = {service: expose(h, f"{service}-b", ports[service], "b", "a")
              for service in ("sink", "echo")}
    limits = {ns: open_files_limit(pid) for ns, pid in _daemons(h).items()}
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
    _report(args, limits, concurrent, idle, failures, h)
    return 1 if failures else 0


def _kib(values: dict[str, int]) -> str:
    return ", ".join(f"{ns} {kib / 1024:.1f} MiB" for ns, kib in values.items())


def _report(args: argparse.Namespace, limits: dict[str, tuple[int, int]],
            concurrent: dict[str, Any] | None, idle: dict[str, Any] | None,
            failures: list[str], h: Hermetic) -> None:
    print("| figure | measured |")
    print("|---|---|")
    print("| daemons' open-files limit (soft/hard) | " + ", ".join(
        f"{ns} {s}/{hd}" for ns, (s, hd) in limits.items()) +
        f" (started with soft {args.daemon_nofile or 'the bench' + chr(39) + 's'}) |")
    if concurrent:
        r, rates = concurrent["result"], concurrent["rates"]
        ratio = f"{rates[-1] / rates[0]:.2f}" if rates and rates[0] > 0 else "inf"
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
            print(f"| per connection max/min | {ratio} (p90/p10 "
                  f"{_pct(rates, 0.9) / max(_pct(rates, 0.1), 1e-9):.2f}) |")
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
    parser.add_argument("--role", choices=("bench", "server", "load-client"), default="bench")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--cap-mib", type=int, default=0)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--per-connection-mib", type=int, default=256)
    parser.add_argument("--idle", type=int, default=5000)
    parser.add_argument("--daemon-nofile", type=int, default=1024,
                        help="soft open-files limit the daemons start with (0: the bench's)")
    parser.add_argument("--profile", metavar="DIR", default="",
                        help="py-spy and perf the daemons during the concurrent window")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    if args.role == "server":
        _serve()
        return 0
    if args.role == "load-client":
        _load_client(args.port, args.count, args.cap_mib * 1024 * 1024)
        return 0
    if args.quick:
        args.connections, args.seconds, args.idle = 200, 4.0, 1000
    _raise_own_limit()
    with hermetic("skupper-bench-scale-", keep=args.keep) as h:
        return _bench(h, args)


if __name__ == "__main__":
    sys.exit(main())
