"""Shared fixtures: hermetic data homes, the real ``skupper`` command, a network guard.

The guard lets the test process connect to loopback, and to the addresses of the test
hosts (network namespaces, tests/netns) that the running test created, only from
inside one of those hosts' namespaces, never from the machine's own: nothing a test
sends may leave by the default route.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests_support import EVENT_LOOPS, Skupper, hermetic_env

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


# The test hosts of the running test: address -> its network namespace's name.
_test_hosts: dict[str, str] = {}


def _namespace_of_this_thread() -> tuple[int, int] | None:
    try:
        found = os.stat("/proc/thread-self/ns/net")
    except OSError:
        return None
    return found.st_dev, found.st_ino


def _inside_test_host(namespace: str) -> bool:
    """Whether this thread runs inside the named test host's network namespace."""
    try:
        host = os.stat(f"/run/netns/{namespace}")
    except OSError:
        return False
    return _namespace_of_this_thread() == (host.st_dev, host.st_ino)


def _check_destination(address: object) -> None:
    if not (isinstance(address, tuple) and address):
        return  # a Unix socket path: not the network
    host = str(address[0])
    try:
        if ipaddress.ip_address(host.split("%")[0]).is_loopback:
            return
    except ValueError:
        if host == "localhost":
            return
    namespace = _test_hosts.get(host)
    if namespace is not None and any(_inside_test_host(ns) for ns in _test_hosts.values()):
        return
    if namespace is not None:
        raise PermissionError(f"tests may connect to the test host {host} only from inside "
                              "a test host's namespace (ip netns exec), never from this one")
    raise PermissionError(f"tests may only connect to loopback and their own test hosts, "
                          f"not {host}")


@pytest.fixture(autouse=True)
def loopback_guard(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Refuse any connect from the test process that is not to loopback or a test host."""
    original = socket.socket.connect
    original_ex = socket.socket.connect_ex

    def connect(self: socket.socket, address: object) -> None:
        _check_destination(address)
        original(self, address)  # type: ignore[arg-type]

    def connect_ex(self: socket.socket, address: object) -> int:
        _check_destination(address)
        return original_ex(self, address)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    try:
        yield
    finally:
        _test_hosts.clear()  # a test's hosts are allowed for that test only


@pytest.fixture
def allow_test_hosts(loopback_guard: None) -> Callable[[dict[str, str]], None]:
    """Add the test's own hosts (address -> namespace name) to what the guard allows."""
    return _test_hosts.update


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



@pytest.fixture(params=EVENT_LOOPS)
def each_event_loop(request: pytest.FixtureRequest,
                    monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run the test once on asyncio's loop and once on uvloop's (the daemon's default).

    In process, ``asyncio.run`` makes its loop from the policy set here; daemons the test
    starts read ``SKUPPER_EVENT_LOOP``. (uvloop connects in C, past the loopback guard's
    patched ``socket.connect``; these tests dial 127.0.0.1 only.)
    """
    import asyncio

    kind: str = request.param
    monkeypatch.setenv("SKUPPER_EVENT_LOOP", kind)
    if kind == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        yield kind
    finally:
        asyncio.set_event_loop_policy(None)
