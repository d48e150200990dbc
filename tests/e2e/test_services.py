"""Service traffic end to end: listeners, connectors and routing over real links.

Three real site daemons in one hermetic data home, linked in a line a - b - c (b
redeemed a's token, c redeemed b's), so a connection from a listener at one end
crosses two links, each used in both directions. Servers are small threads in this
process on 127.0.0.1; every wait is bounded. The tests share the network (building it
takes most of the time) and run in file order; the last ones change the topology.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.util
import json
import os
import re
import socket
import socketserver
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests_support import EVENT_LOOPS, Skupper, free_port, hermetic_env, table, wait_for

pytestmark = pytest.mark.e2e

LOOPBACK = "127.0.0.1"
MIB = 1024 * 1024


# --- helpers ------------------------------------------------------------------------------






def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _crd_check() -> Callable[[dict[str, Any]], None]:
    path = Path(__file__).resolve().parents[1] / "unit" / "test_crd_schemas.py"
    spec = importlib.util.spec_from_file_location("_crd_schemas_for_services", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.check  # type: ignore[no-any-return]


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve(handler: Callable[[socket.socket], None]) -> tuple[Server, int]:
    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.settimeout(30)
            with contextlib.suppress(OSError):
                handler(self.request)

    server = Server((LOOPBACK, 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    return server, int(server.server_address[1])


def echo(sock: socket.socket) -> None:
    while data := sock.recv(65536):
        sock.sendall(data)
    sock.shutdown(socket.SHUT_WR)


def recv_all(sock: socket.socket) -> bytes:
    chunks = []
    while data := sock.recv(65536):
        chunks.append(data)
    return b"".join(chunks)


def connect(port: int, timeout: float = 20) -> socket.socket:
    sock = socket.create_connection((LOOPBACK, port), timeout=timeout)
    return sock


def echo_once(port: int, payload: bytes) -> bytes:
    with connect(port) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        return recv_all(sock)


def echo_works(port: int) -> bool:
    try:
        return echo_once(port, b"ping") == b"ping"
    except OSError:
        return False


def reset(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


# --- the network ------------------------------------------------------------------------


class Net:
    def __init__(self, skupper: Skupper, home: Path) -> None:
        self.skupper = skupper
        self.home = home
        self.servers: list[Server] = []

    def run(self, *args: str, check: bool = True) -> Any:
        return self.skupper.run(*args, check=check)

    def close(self) -> None:
        """Stop every daemon and server of this network (by pid; the servers' threads)."""
        self.skupper.kill_daemons()
        for server in self.servers:
            server.shutdown()
            server.server_close()

    def serve(self, handler: Callable[[socket.socket], None]) -> int:
        server, port = serve(handler)
        self.servers.append(server)
        return port

    def link(self, issuer: str, redeemer: str, *extra: str) -> str:
        file = self.home / f"{issuer}-{redeemer}.yaml"
        out = self.run("access-token", "issue", str(file), "-n", issuer, *extra).stdout
        self.run("access-token", "redeem", str(file), "-n", redeemer)
        match = re.search(r'Grant "([^"]+)" is ready', out)
        assert match, out
        return match.group(1)

    def listener(self, ns: str, name: str, *extra: str) -> int:
        port = free_port()
        self.run("listener", "create", name, str(port), "--host", LOOPBACK, "-n", ns, *extra)
        return port

    def connector(self, ns: str, name: str, port: int, *extra: str) -> None:
        self.run("connector", "create", name, str(port), "-n", ns, *extra)

    def listener_row(self, ns: str, name: str) -> dict[str, str]:
        (row,) = table(self.run("listener", "status", name, "-n", ns).stdout)
        return row

    def wait_ready(self, ns: str, name: str, timeout: float = 15) -> None:
        wait_for(f"listener {name} at {ns} Ready",
                 lambda: self.listener_row(ns, name)["STATUS"] == "Ready", timeout)

    def site_row(self, ns: str) -> dict[str, str]:
        (row,) = table(self.run("site", "status", "-n", ns).stdout)
        return row


def echo_listener(net: Net) -> int:
    """The port of listener "echo" at a (connector at c), made if an earlier test did not."""
    for row in table(net.run("listener", "status", "-n", "a").stdout):
        if row["NAME"] == "echo":
            return int(row["PORT"])
    if not any(row["NAME"] == "echo" for row in table(net.run("connector", "status", "-n", "c"
                                                              ).stdout)):
        net.connector("c", "echo", net.serve(echo))
    port = net.listener("a", "echo")
    net.wait_ready("a", "echo")
    return port


@contextlib.contextmanager
def line_of_sites(folder: Path, event_loop: str = "") -> Iterator[Net]:
    """Sites a - b - c (b redeemed a's token, c redeemed b's) in a data home under
    ``folder``, their daemons on ``event_loop`` (SKUPPER_EVENT_LOOP; default: the
    daemon's choice); every daemon and server is stopped at the end, also on failure."""
    home = folder / "home"
    home.mkdir()
    env = hermetic_env(home)
    if event_loop:
        env["SKUPPER_EVENT_LOOP"] = event_loop
    skupper = Skupper(home=home, env=env)
    network = Net(skupper, folder)
    try:
        skupper.run("site", "create", "a", "-n", "a", "--enable-link-access")
        skupper.run("site", "create", "b", "-n", "b", "--enable-link-access")
        skupper.run("site", "create", "c", "-n", "c")
        network.link("a", "b")
        network.link("b", "c")
        yield network
    finally:
        network.close()


@pytest.fixture(scope="module", params=EVENT_LOOPS)
def net(request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    """The data plane runs on both event loops: every test here runs on each."""
    with line_of_sites(tmp_path_factory.mktemp("services"), request.param) as network:
        yield network


# --- listeners and connectors --------------------------------------------------------------


def test_the_daemons_run_on_the_event_loop_they_were_told(net: Net) -> None:
    wanted = net.skupper.env["SKUPPER_EVENT_LOOP"]
    for site in ("a", "b", "c"):
        log = Path(net.skupper.env["XDG_DATA_HOME"]) / "skupper" / "namespaces" / site \
            / "logs" / "daemon.log"
        assert f"(pid {net.skupper.daemon_pid(site)}, event loop {wanted}," in log.read_text()


def test_a_client_at_one_end_reaches_a_server_two_links_away(net: Net) -> None:
    server = net.serve(echo)
    net.connector("c", "echo", server)
    port = net.listener("a", "echo")
    net.wait_ready("a", "echo")
    assert echo_once(port, b"hello through b") == b"hello through b"
    row = net.listener_row("a", "echo")
    assert (row["ROUTING-KEY"], row["MATCHING-CONNECTOR"], row["MESSAGE"]) == (
        "echo", "true", "OK")


def test_the_other_direction_over_the_same_links(net: Net) -> None:
    # a accepted b's link and b accepted c's: now the client is at c, the server at a.
    server = net.serve(echo)
    net.connector("a", "back", server)
    port = net.listener("c", "back")
    net.wait_ready("c", "back")
    assert echo_once(port, b"and back") == b"and back"


def test_many_concurrent_connections(net: Net) -> None:
    port = echo_listener(net)

    async def one(i: int) -> bool:
        reader, writer = await asyncio.open_connection(LOOPBACK, port)
        payload = os.urandom(1024 + i * 97)
        writer.write(payload)
        await writer.drain()
        got = await reader.readexactly(len(payload))
        writer.close()
        await writer.wait_closed()
        return got == payload

    async def all_of_them() -> list[bool]:
        async with asyncio.timeout(30):
            return await asyncio.gather(*(one(i) for i in range(64)))

    assert all(asyncio.run(all_of_them()))


def test_a_connector_at_the_listeners_own_site(net: Net) -> None:
    net.connector("b", "local", net.serve(echo))
    port = net.listener("b", "local")
    net.wait_ready("b", "local")
    assert echo_once(port, b"no link needed") == b"no link needed"
    net.run("connector", "delete", "local", "-n", "b")
    net.run("listener", "delete", "local", "-n", "b")


def test_sites_and_services_are_known_network_wide(net: Net) -> None:
    def settled() -> dict[str, str] | None:
        row = net.site_row("a")
        return row if row["SITES-IN-NETWORK"] == "3" and row["SERVICES-IN-NETWORK"] == "2" \
            else None

    wait_for("a sees 3 sites and 2 services", settled, 10)
    status = json.loads(net.run("site", "status", "-n", "c", "-o", "json").stdout)["status"]
    names = {entry["name"] for entry in status["network"]}
    assert names == {"a", "b", "c"}
    services = {(entry["name"], svc["routingKey"]): svc for entry in status["network"]
                for svc in entry.get("services") or []}
    assert services["c", "echo"] == {"routingKey": "echo", "connectors": ["echo"]}
    assert services["a", "echo"] == {"routingKey": "echo", "listeners": ["echo"]}
    assert services["c", "back"] == {"routingKey": "back", "listeners": ["back"]}


def test_status_fits_upstreams_crds(net: Net) -> None:
    check = _crd_check()
    for ns, kind in (("a", "listener"), ("c", "connector")):
        (item,) = [i for i in json.loads(
            net.run(kind, "status", "-n", ns, "-o", "json").stdout)["items"]
            if i["metadata"]["name"] == "echo"]
        check(item)
        assert {c["type"] for c in item["status"]["conditions"]} == {
            "Configured", "Matched", "Ready"}
    listener = json.loads(net.run("listener", "status", "echo", "-n", "a", "-o", "json").stdout)
    assert listener["status"]["hasMatchingConnector"] is True
    check(json.loads(net.run("site", "status", "-n", "a", "-o", "json").stdout))


# --- transport properties --------------------------------------------------------------


def _checksum(sock: socket.socket) -> None:
    digest, total = hashlib.sha256(), 0
    while data := sock.recv(1 << 20):
        digest.update(data)
        total += len(data)
    sock.sendall(f"{total} {digest.hexdigest()}\n".encode())
    sock.shutdown(socket.SHUT_WR)


def test_a_64_mib_transfer_arrives_intact(net: Net) -> None:
    server = net.serve(_checksum)
    net.connector("c", "sum", server)
    port = net.listener("a", "sum")
    net.wait_ready("a", "sum")
    block = os.urandom(MIB)
    digest = hashlib.sha256()
    with connect(port, timeout=60) as sock:
        for i in range(64):
            chunk = block[i:] + block[:i]  # every MiB different
            digest.update(chunk)
            sock.sendall(chunk)
        sock.shutdown(socket.SHUT_WR)
        answer = recv_all(sock).decode()
    assert answer == f"{64 * MIB} {digest.hexdigest()}\n"


def test_half_close_in_both_directions(net: Net) -> None:
    after: list[bytes] = []

    def speak_first(sock: socket.socket) -> None:
        sock.sendall(b"server speaks and closes its side")
        sock.shutdown(socket.SHUT_WR)  # server -> client half-close
        after.append(recv_all(sock))  # ... yet still hears the client until its FIN

    server = net.serve(speak_first)
    net.connector("c", "half", server)
    port = net.listener("a", "half")
    net.wait_ready("a", "half")
    with connect(port) as sock:
        assert recv_all(sock) == b"server speaks and closes its side"
        sock.sendall(b"client speaks after the server's FIN")
        sock.shutdown(socket.SHUT_WR)  # client -> server half-close
        assert sock.recv(10) == b""
    wait_for("the server heard the client", lambda: after, 10)
    assert after == [b"client speaks after the server's FIN"]
    # And the usual order: the client closes first, then reads the whole answer.
    echo_port = echo_listener(net)
    assert echo_once(echo_port, b"x" * 300_000) == b"x" * 300_000


def test_a_reset_arrives_as_a_reset(net: Net) -> None:
    outcomes: list[str] = []
    accepted = threading.Event()

    def watch(sock: socket.socket) -> None:
        accepted.set()
        if sock.recv(1) == b"r":  # asked to reset the client
            reset(sock)
            outcomes.append("server reset")
            return
        try:
            while sock.recv(65536):
                pass
            outcomes.append("eof")
        except ConnectionResetError:
            outcomes.append("reset")

    server = net.serve(watch)
    net.connector("c", "rst", server)
    port = net.listener("a", "rst")
    net.wait_ready("a", "rst")

    # The client resets: the server sees a reset, not an orderly end.
    sock = connect(port)
    sock.sendall(b"-hello")
    assert accepted.wait(10)
    time.sleep(0.2)  # the connection is spliced end to end
    reset(sock)
    wait_for("the server saw the end", lambda: outcomes, 10)
    assert outcomes == ["reset"]

    # The server resets: the client sees a reset.
    outcomes.clear()
    with connect(port) as sock:
        sock.sendall(b"r")
        with pytest.raises(ConnectionResetError):
            while sock.recv(65536):
                pass
    # The server's thread records its reset after sending it: the client may be first.
    wait_for("the server's reset recorded", lambda: outcomes, 5)
    assert outcomes == ["server reset"]


def test_a_slow_reader_stalls_neither_other_streams_nor_memory(net: Net) -> None:
    stop = threading.Event()

    def firehose(sock: socket.socket) -> None:
        block = b"f" * 65536
        sent = 0
        while not stop.is_set() and sent < 512 * MIB:
            sock.sendall(block)
            sent += len(block)

    server = net.serve(firehose)
    net.connector("c", "hose", server)
    port = net.listener("a", "hose")
    net.wait_ready("a", "hose")
    echo_port = echo_listener(net)
    pids = {ns: net.skupper.daemon_pid(ns) for ns in "abc"}
    before = {ns: rss_kib(pid) for ns, pid in pids.items() if pid}
    with connect(port) as slow:
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        assert slow.recv(1) == b"f"  # the hose flows ... and then nobody reads
        time.sleep(1.5)  # every buffer on the way fills up
        mid = {ns: rss_kib(pid) for ns, pid in pids.items() if pid}
        # Other connections over the same links still answer at once.
        for _ in range(20):
            started = time.monotonic()
            assert echo_once(echo_port, b"still here") == b"still here"
            assert time.monotonic() - started < 2.0
        time.sleep(1.0)
        after = {ns: rss_kib(pid) for ns, pid in pids.items() if pid}
        stop.set()
    print("RSS KiB before/mid/after:", before, mid, after)
    for ns in before:
        # One stream's window (4 MiB) plus socket reads per hop, not the 512 MiB offered.
        assert after[ns] - before[ns] < 16 * 1024, (ns, before, mid, after)
        assert after[ns] - mid[ns] < 4 * 1024, (ns, before, mid, after)


# --- several connectors, failover and the CLI ---------------------------------------------


def test_connectors_with_the_same_key_share_the_load(net: Net) -> None:
    seen: list[str] = []

    def named(name: str) -> Callable[[socket.socket], None]:
        def handler(sock: socket.socket) -> None:
            seen.append(name)
            sock.sendall(name.encode())
            sock.shutdown(socket.SHUT_WR)
            recv_all(sock)

        return handler

    net.connector("b", "shared-b", net.serve(named("b")), "--routing-key", "shared")
    net.connector("c", "shared-c", net.serve(named("c")), "--routing-key", "shared")
    port = net.listener("a", "shared")
    net.wait_ready("a", "shared")
    wait_for("both connectors known at a", lambda: len(json.loads(net.run(
        "site", "status", "-n", "a", "-o", "json").stdout)["status"]["network"]) == 3, 10)

    def both_seen() -> bool:
        seen.clear()
        for _ in range(10):
            with connect(port) as sock:
                sock.shutdown(socket.SHUT_WR)
                recv_all(sock)
        return {"b", "c"} <= set(seen)

    wait_for("connections spread over b and c", both_seen, 15, 0.2)
    assert 3 <= seen.count("b") <= 7, seen


def test_cli_refuses_bad_input_and_duplicates(net: Net) -> None:
    for args, fragment in [
        (("listener", "create", "Bad_Name", "8080"), "Invalid listener name"),
        (("listener", "create", "ok", "70000"), "Invalid listener port"),
        (("listener", "create", "ok", "http"), "Invalid listener port"),
        (("connector", "create", "ok", "80", "--routing-key", "no spaces"),
         "Invalid routing key"),
        (("connector", "create", "ok", "80", "--host", "bad host!"), "Invalid host"),
        (("listener", "create", "echo", "1234"), 'already a listener "echo"'),
        (("listener", "delete", "nope"), 'No listener "nope"'),
        (("connector", "status", "nope"), 'No connector "nope"'),
    ]:
        done = net.run(*args, "-n", "a", check=False)
        assert done.returncode != 0, args
        assert fragment in done.stderr, (args, done.stderr)
        assert done.stderr.startswith("Error: ") and "Traceback" not in done.stderr
    # A port that is taken fails the command with the reason, and leaves no listener.
    with socket.socket() as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        done = net.run("listener", "create", "taken", port, "--host", LOOPBACK, "-n", "a",
                       check=False)
        assert done.returncode == 1 and "cannot listen on" in done.stderr, done.stderr
        assert "another process holds the port" in done.stderr
        assert "taken" not in net.run("listener", "status", "-n", "a").stdout
    # -o prints the resource in upstream's shape and creates nothing.
    printed = json.loads(net.run("connector", "create", "db", "5432", "-o", "json",
                                 "-n", "a").stdout)
    assert printed["spec"] == {"routingKey": "db", "host": "127.0.0.1", "port": 5432}
    _crd_check()(printed)
    assert table(net.run("connector", "status", "-n", "a").stdout)[0]["NAME"] == "back"


def test_update_moves_a_listener_and_delete_removes_it(net: Net) -> None:
    old = echo_listener(net)
    new = free_port()
    net.run("listener", "update", "echo", "--port", str(new), "-n", "a")
    wait_for("the listener moved", lambda: echo_works(new), 10)
    with pytest.raises(OSError):
        connect(old, timeout=2).close()
    done = net.run("listener", "delete", "echo", "-n", "a")
    assert done.stdout.endswith('Listener "echo" is deleted.\n')
    with pytest.raises(OSError):
        connect(new, timeout=2).close()


def test_listeners_and_connectors_come_back_after_a_restart(net: Net) -> None:
    net.connector("c", "again", net.serve(echo))
    port = net.listener("a", "again")
    net.wait_ready("a", "again")
    for ns in ("a", "c"):
        net.run("system", "stop", "-n", ns)
        net.run("system", "start", "-n", ns)
    wait_for("again works after restarts", lambda: echo_works(port), 20, 0.2)
    net.wait_ready("a", "again")


def test_new_connections_take_another_path_when_a_link_drops(net: Net) -> None:
    # A second path to c: c also links to a directly (cheaper than a - b - c).
    server = net.serve(echo)
    net.connector("c", "alt", server)
    port = net.listener("a", "alt")
    net.wait_ready("a", "alt")
    direct = net.link("a", "c")
    assert echo_once(port, b"direct") == b"direct"
    net.run("link", "delete", direct, "-n", "c")
    # Through b now; no connection fails for longer than the network needs to notice.
    wait_for("alt through b", lambda: echo_works(port), 10)
    assert echo_once(port, b"via b") == b"via b"

    # Without any path, the listener says so, and clients are turned away at once.
    (link_bc,) = [row["NAME"] for row in table(net.run("link", "status", "-n", "c").stdout)
                  if row["DIRECTION"] == "outgoing"]
    net.run("link", "delete", link_bc, "-n", "c")
    wait_for("a says no connector", lambda: net.listener_row("a", "alt")["MESSAGE"]
             == "No matching connectors", 10)
    row = net.listener_row("a", "alt")
    assert (row["STATUS"], row["MATCHING-CONNECTOR"]) == ("Pending", "false")
    try:  # an RST (maybe before connect returns), never an answer and never a hang
        with connect(port, timeout=5) as sock:
            sock.sendall(b"anyone?")
            answer = sock.recv(10)
    except (ConnectionResetError, BrokenPipeError):
        answer = b""
    assert answer == b""
    wait_for("a counts 2 sites", lambda: net.site_row("a")["SITES-IN-NETWORK"] == "2", 10)
