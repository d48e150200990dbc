"""What the docker and podman tests share: an echo server, service traffic, link states."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import socketserver
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests_support import Skupper, free_port, table, wait_for

BASE_IMAGE = os.environ.get("SKUPPER_TEST_BASE_IMAGE", "skupper-py-base:bookworm")
LOOPBACK = "127.0.0.1"
LINK_TIMEOUT = 60.0


@dataclass(frozen=True)
class EngineUnderTest:
    kind: str
    env: dict[str, str]  # what the skupper command needs to reach the engine

    def cli(self, *args: str, check: bool = True, timeout: float = 60,
            ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([self.kind, *args], capture_output=True, text=True,
                              timeout=timeout, env={**os.environ, **self.env}, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"{self.kind} {' '.join(args)}: {done.stderr}")
        return done

    def inspect(self, name: str) -> dict[str, object] | None:
        done = self.cli("inspect", "--type", "container", name, check=False)
        if done.returncode != 0:
            return None
        found: list[dict[str, object]] = json.loads(done.stdout)
        return found[0]


class ContainerSkupper(Skupper):
    """Skupper whose namespaces may run in containers: their pid files are never read.

    A daemon in a container writes its pid in the container's pid namespace (often 1):
    signalling that number on the host would hit an unrelated process.
    """

    def daemon_pid(self, namespace: str = "default") -> int | None:
        if (self.namespace_dir(namespace) / "platform").exists():
            return None
        return super().daemon_pid(namespace)


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.settimeout(30)
        with contextlib.suppress(OSError):
            while data := self.request.recv(65536):
                self.request.sendall(data)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@contextlib.contextmanager
def echo_server() -> Iterator[int]:
    """An echo server on 127.0.0.1 in this process; yields its port."""
    server = _Server((LOOPBACK, 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def echo_through(port: int, payload: bytes) -> bytes | None:
    """``payload`` sent to 127.0.0.1:port and read back, or None if that failed."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=5) as sock:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
            return received
    except OSError:
        return None


def link_states(runner: Skupper, namespace: str) -> list[dict[str, str]]:
    return table(runner.run("link", "status", "-n", namespace).stdout)


def wait_link_ready(runner: Skupper, namespace: str, direction: str,
                    timeout: float = LINK_TIMEOUT) -> dict[str, str]:
    def ready() -> dict[str, str] | None:
        for row in link_states(runner, namespace):
            if row["DIRECTION"] == direction and row["STATUS"] == "Ready":
                return row
        return None

    return wait_for(f"a Ready {direction} link at {namespace}", ready, timeout, 0.2)


def redeem(runner: Skupper, issuer: str, redeemer: str, folder: Path) -> str:
    """``redeemer`` redeems a token issued at ``issuer``; the link's name."""
    token = folder / f"{issuer}-to-{redeemer}.yaml"
    runner.run("access-token", "issue", str(token), "-n", issuer)
    done = runner.run("access-token", "redeem", str(token), "-n", redeemer)
    assert "is active." in done.stdout, done.stdout
    return done.stdout.split('Link "')[1].split('"')[0]


def serve_between(runner: Skupper, server_ns: str, client_ns: str, key: str) -> None:
    """An echo server offered at ``server_ns`` answers a client of a listener at
    ``client_ns``: bytes cross the link and come back."""
    with echo_server() as backend:
        runner.run("connector", "create", key, str(backend), "--host", LOOPBACK,
                   "-n", server_ns)
        front = free_port()
        runner.run("listener", "create", key, str(front), "--host", LOOPBACK,
                   "-n", client_ns, "--wait", "ready")
        payload = f"{key} from {client_ns} to {server_ns} ".encode() * 500 + os.urandom(64)
        got = wait_for(f"echo {client_ns} -> {server_ns}",
                       lambda: echo_through(front, payload) == payload or None, 30, 0.2)
        assert got
        runner.run("listener", "delete", key, "-n", client_ns)
        runner.run("connector", "delete", key, "-n", server_ns)


def seed_ports(runner: Skupper, namespace: str) -> None:
    """Give a namespace link ports away from the default range before its first start.

    The daemon keeps the ports of its first start (runtime/ports.json) and, if one is
    taken when it restarts, moves and breaks its links. Other sites on a busy machine
    start at the defaults and grab a port freed for an instant by a crash; ports from
    the ephemeral range, chosen free now, make that collision unlikely.
    """
    runtime = runner.namespace_dir(namespace) / "runtime"
    runtime.mkdir(parents=True, mode=0o700)
    runtime.parent.chmod(0o700)
    ports = {"inter-router": free_port(), "edge": free_port(), "grant-server": free_port()}
    (runtime / "ports.json").write_text(json.dumps(ports))


def host_network_state() -> str:
    """IP forwarding and the firewall's rules: what building and running sites must keep."""
    parts = [Path(f"/proc/sys/net/{p}").read_text().strip()
             for p in ("ipv4/ip_forward", "ipv6/conf/all/forwarding")]
    for argv in (["nft", "list", "ruleset"], ["iptables-save"]):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                                  check=False)
            if done.returncode == 0:
                rules = (line for line in done.stdout.splitlines() if not line.startswith("#"))
                # Counters move with every packet: only the rules themselves count.
                parts.append(re.sub(r"counter packets \d+ bytes \d+|\[\d+:\d+\]", "",
                                    "\n".join(rules)))
                break
    return "\n".join(parts)
