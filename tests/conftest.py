"""Shared fixtures: hermetic data homes, the real ``skupper`` command, loopback only."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SKUPPER = str(Path(sys.executable).parent / "skupper")


def _loopback_only(address: object) -> None:
    if isinstance(address, tuple) and address:
        host = str(address[0])
        try:
            if not ipaddress.ip_address(host.split("%")[0]).is_loopback:
                raise PermissionError(f"tests may only connect to loopback, not {host}")
        except ValueError:
            if host != "localhost":
                raise PermissionError(f"tests may only connect to loopback, not {host}") from None


@pytest.fixture(autouse=True)
def loopback_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuse any connect from the test process that is not to loopback."""
    original = socket.socket.connect
    original_ex = socket.socket.connect_ex

    def connect(self: socket.socket, address: object) -> None:
        _loopback_only(address)
        original(self, address)  # type: ignore[arg-type]

    def connect_ex(self: socket.socket, address: object) -> int:
        _loopback_only(address)
        return original_ex(self, address)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)


@dataclass
class Skupper:
    """Runs the installed ``skupper`` command in one hermetic data home."""

    home: Path
    env: dict[str, str]
    namespaces: set[str] = field(default_factory=set)

    def run(
        self, *args: str, check: bool = True, timeout: float = 60, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        for flag in ("-n", "--namespace"):
            if flag in args:
                self.namespaces.add(args[args.index(flag) + 1])
        self.namespaces.add("default")
        done = subprocess.run(
            [SKUPPER, *args], env=self.env, capture_output=True, text=True,
            timeout=timeout, input=input, check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"skupper {' '.join(args)} exited {done.returncode}\n"
                f"stdout: {done.stdout}\nstderr: {done.stderr}"
            )
        return done

    def fails(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        done = self.run(*args, check=False, timeout=timeout)
        assert done.returncode != 0, f"expected failure: {done.stdout}{done.stderr}"
        return done

    def namespace_dir(self, namespace: str = "default") -> Path:
        return self.home / "data" / "skupper" / "namespaces" / namespace

    def daemon_pid(self, namespace: str = "default") -> int | None:
        try:
            return int((self.namespace_dir(namespace) / "runtime" / "daemon.pid").read_text())
        except (OSError, ValueError):
            return None

    def kill_daemons(self) -> None:
        """Stop every daemon this test started, by pid."""
        for namespace in self.namespaces:
            pid = self.daemon_pid(namespace)
            if pid is None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.02)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
            return False
    return True


def hermetic_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SKUPPER_", "KUBE", "XDG_"))}
    env.update(
        HOME=str(home),
        XDG_DATA_HOME=str(home / "data"),
        XDG_CONFIG_HOME=str(home / "config"),
        SKUPPER_PLATFORM="systemd",
        SKUPPER_SERVICE_MANAGER="process",
        SKUPPER_LINK_ACCESS_HOST="127.0.0.1",
    )
    return env


@pytest.fixture
def skupper(tmp_path: Path) -> Iterator[Skupper]:
    home = tmp_path / "home"
    home.mkdir()
    runner = Skupper(home=home, env=hermetic_env(home))
    try:
        yield runner
    finally:
        runner.kill_daemons()


@pytest.fixture
def west(skupper: Skupper) -> Skupper:
    """A running site "west" with link access on 127.0.0.1."""
    skupper.run("site", "create", "west", "--enable-link-access")
    return skupper
