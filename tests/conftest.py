"""Shared fixtures: hermetic data homes, the real ``skupper`` command, loopback only."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests_support import Skupper, hermetic_env

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


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
