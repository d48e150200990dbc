"""Constants shared by test modules (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

SKUPPER = str(Path(sys.executable).parent / "skupper")

# The event loops the data plane runs on (SKUPPER_EVENT_LOOP); its tests run on each.
EVENT_LOOPS = ("asyncio", "uvloop")

# Test servers' ports come from here up to the start of the kernel's ephemeral range.
TEST_PORTS_FROM = 20000


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now, from below the kernel's ephemeral range.

    Not bind(0): that picks from the ephemeral range, whose ports the kernel also hands
    out as the source ports of outgoing connections, so a port a test gives a server
    (and expects to get back when that server restarts) could be taken meanwhile by any
    client on the machine, another test suite's included.
    """
    end = _ephemeral_start()
    if end - TEST_PORTS_FROM >= 1000:
        for _ in range(256):
            port = random.randrange(TEST_PORTS_FROM, end)
            with socket.socket() as sock:
                try:
                    sock.bind((host, port))
                except OSError:
                    continue
                return port
    with socket.socket() as sock:  # no room below the range: the kernel's choice
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


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

    def fails(self, *args: str, timeout: float = 60,
              input: str | None = None) -> subprocess.CompletedProcess[str]:
        done = self.run(*args, check=False, timeout=timeout, input=input)
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
            if pid is not None:
                stop_pid(pid)


def stop_pid(pid: int, grace: float = 5.0) -> None:
    """SIGTERM ``pid``, then SIGKILL it if it is still alive after ``grace`` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and alive(pid):
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def alive(pid: int) -> bool:
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


T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float,
             interval: float = 0.05) -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s (last: {last!r})")
        time.sleep(interval)


def table(text: str) -> list[dict[str, str]]:
    """Rows of a CLI table, keyed by header; [] for a "There are no ..." message."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or lines[0].startswith("There are no"):
        return []
    columns = [(m.group(), m.start()) for m in re.finditer(r"\S+(?: \S+)*", lines[0])]
    rows = []
    for line in lines[1:]:
        row = {}
        for i, (name, start) in enumerate(columns):
            end = columns[i + 1][1] if i + 1 < len(columns) else None
            row[name] = line[start:end].strip()
        rows.append(row)
    return rows


def kill9(skupper: Skupper, ns: str) -> None:
    """SIGKILL a namespace's daemon and wait until it is gone."""
    pid = skupper.daemon_pid(ns)
    assert pid is not None, f"no daemon pid for {ns}"
    os.kill(pid, signal.SIGKILL)
    wait_for(f"the daemon of {ns} (pid {pid}) to die", lambda: not alive(pid), 5, 0.02)


def one_error_line(done: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """A refusal is one line on stderr, starting with "Error:", and a non-zero exit."""
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("Error:"), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return str(lines[0])
