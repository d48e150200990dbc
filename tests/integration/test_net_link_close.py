"""Closing a link whose peer went silent never waits for a TLS goodbye (issue 11).

The peer is a thread holding a real TLS 1.3 connection on 127.0.0.1 that stops reading
after the handshake: it never answers our close_notify, as a host behind a cut wire.
Before the fix ``aclose`` waited for asyncio's 30 s TLS shutdown timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Iterator

import pytest

from skupper.certs.issue import generate_ca, issue_certificate
from skupper.certs.tls import client_context, server_context
from skupper.router.link import CLOSE_GRACE_SECONDS, TCP_USER_TIMEOUT_MS, LinkConnection
from skupper.router.link_transport import dial_tls

# The data plane runs on both event loops; every test here runs on each.
pytestmark = pytest.mark.usefixtures("each_event_loop")


@pytest.fixture
def silent_peer() -> Iterator[tuple[int, ssl.SSLContext]]:
    """A TLS server that completes one handshake, then never reads again."""
    ca = generate_ca("silent CA")
    server = issue_certificate(ca, "silent", usage="server", hosts=["127.0.0.1"])
    client = issue_certificate(ca, "dialer", usage="client")
    tls = server_context(server.cert_pem, server.key_pem, client_ca_pem=ca.cert_pem)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(10)
    done = threading.Event()
    held: list[socket.socket] = []

    def accept_and_go_silent() -> None:
        with contextlib.suppress(OSError):
            raw, _ = listener.accept()
            held.append(tls.wrap_socket(raw, server_side=True))
        done.wait(20)  # holds the connection open, reading nothing

    thread = threading.Thread(target=accept_and_go_silent, daemon=True)
    thread.start()
    try:
        yield (int(listener.getsockname()[1]),
               client_context(ca.cert_pem, cert_pem=client.cert_pem, key_pem=client.key_pem))
    finally:
        done.set()
        thread.join(5)
        for sock in held:
            sock.close()
        listener.close()


def test_aclose_towards_a_silent_peer_is_bounded_by_the_grace(
    silent_peer: tuple[int, ssl.SSLContext],
) -> None:
    port, tls = silent_peer

    async def scenario() -> tuple[float, float, int]:
        link = LinkConnection(await dial_tls("127.0.0.1", port, tls), is_client=True,
                              local_hello={})
        started = time.monotonic()
        closing = asyncio.ensure_future(link.aclose("the test closes it"))
        reason = await asyncio.wait_for(link.wait_closed(), 1)  # told at once
        told = time.monotonic() - started
        assert reason == "the test closes it"
        await asyncio.wait_for(closing, 10)
        return told, time.monotonic() - started, int(link.transport.is_closing())

    told, closed, closing = asyncio.run(scenario())
    assert told < 0.5, told
    assert closed <= CLOSE_GRACE_SECONDS + 1.5, closed  # not asyncio's 30 s
    assert closing


def test_the_heartbeat_arms_the_kernels_bound_on_unacknowledged_data(
    silent_peer: tuple[int, ssl.SSLContext],
) -> None:
    port, tls = silent_peer

    async def scenario() -> int:
        link = LinkConnection(await dial_tls("127.0.0.1", port, tls), is_client=True,
                              local_hello={})
        heartbeat = asyncio.ensure_future(link._heartbeat())
        await asyncio.sleep(0.1)
        sock = link.get_extra_info("socket")
        value = int(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT))
        heartbeat.cancel()
        link.close("done", grace=0)
        with contextlib.suppress(asyncio.CancelledError):
            await heartbeat
        return value

    assert asyncio.run(scenario()) == TCP_USER_TIMEOUT_MS
