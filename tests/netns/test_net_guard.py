"""The tests' network guard: loopback, and the test's own hosts from inside them only."""

from __future__ import annotations

import ctypes
import os
import socket
import threading
import time

import pytest
from hosts import Host, Network

CLONE_NEWNET = 0x40000000
ECHO_PORT = 7201


def _connect_from_inside(host: Host, address: tuple[str, int]) -> object:
    """Connect from a thread that entered ``host``'s network namespace; the outcome."""
    outcome: list[object] = []

    def enter_and_connect() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"/run/netns/{host.name}", os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                outcome.append(OSError(ctypes.get_errno(), "setns"))
                return
        finally:
            os.close(fd)
        try:
            with socket.socket() as sock:
                sock.settimeout(5)
                sock.connect(address)
                sock.sendall(b"ping")
                outcome.append(sock.recv(4))
        except Exception as exc:  # reported to the test thread
            outcome.append(exc)

    thread = threading.Thread(target=enter_and_connect)
    thread.start()
    thread.join(15)
    return outcome[0] if outcome else TimeoutError("no outcome")


def test_the_guard_allows_exactly_the_test_hosts_and_only_from_inside(
    network: Network,
) -> None:
    west, east = network.add_host("west"), network.add_host("east")
    west.serve("serve-echo", west.address, str(ECHO_PORT))

    # From this (the machine's own) namespace a test host's address would leave by the
    # default route: refused before any packet is sent.
    with pytest.raises(PermissionError, match="only from inside"), socket.socket() as sock:
        sock.connect((west.address, ECHO_PORT))
    # An address no test host has is refused everywhere.
    with pytest.raises(PermissionError, match="loopback and their own test hosts"):
        socket.create_connection(("10.231.255.9", 80), timeout=1)
    assert isinstance(_connect_from_inside(east, ("10.231.255.9", 80)), PermissionError)

    # From inside a test host, another test host is reachable over the wire.
    deadline = time.monotonic() + 10
    while (got := _connect_from_inside(east, (west.address, ECHO_PORT))) != b"ping":
        assert time.monotonic() < deadline, got
        time.sleep(0.1)

    # The peers the tests run inside the hosts carry the same guard.
    with pytest.raises(AssertionError, match="may only connect to loopback and the test hosts"):
        east.peer("rtt", "10.231.255.9", "80", "1", timeout=20)
