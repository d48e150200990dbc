"""The router's asyncio link driver, in process: real TLS 1.3 on 127.0.0.1, real yamux.

A LinkListener (the "west" end) and a Dialer (the "east" end) are wired as the daemon
wires them, with certificates from ``skupper.certs.issue`` and contexts from
``skupper.certs.tls``. Every wait is bounded by ``asyncio.timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from skupper.certs.issue import KeyPair, generate_ca, issue_certificate
from skupper.certs.tls import client_context, server_context
from skupper.router.dialer import Dialer, DialTarget, LinkReport
from skupper.router.link import LinkClosed, LinkConnection
from skupper.router.link_transport import LinkProtocol, dial_tls
from skupper.router.listener import LinkListener
from skupper.router.stream import LinkStream, StreamReset
from tests_support import free_port

# The data plane runs on both event loops; every test here runs on each.
pytestmark = pytest.mark.usefixtures("each_event_loop")

WEST = {"siteId": "11111111-1111-4111-8111-111111111111", "siteName": "west"}
EAST = {"siteId": "22222222-2222-4222-8222-222222222222", "siteName": "east"}
LINK_NAME = "west-link"

StreamHandler = Callable[[LinkStream], Awaitable[None]]


@dataclass(frozen=True)
class Pki:
    site_ca: KeyPair
    router: KeyPair  # west's inter-router server certificate
    client: KeyPair  # east's client certificate, from west's site CA
    foreign_client: KeyPair  # a client certificate from some other CA

    def server_tls(self) -> ssl.SSLContext:
        return server_context(self.router.cert_pem, self.router.key_pem,
                              client_ca_pem=self.site_ca.cert_pem)

    def client_tls(self, pair: KeyPair | None = None) -> ssl.SSLContext:
        pair = pair or self.client
        return client_context(self.site_ca.cert_pem, cert_pem=pair.cert_pem,
                              key_pem=pair.key_pem)


@pytest.fixture(scope="module")
def pki() -> Pki:
    site_ca = generate_ca("west site CA")
    other_ca = generate_ca("some other CA")
    return Pki(
        site_ca=site_ca,
        router=issue_certificate(site_ca, "west router", usage="server", hosts=["127.0.0.1"]),
        client=issue_certificate(site_ca, "east", usage="client"),
        foreign_client=issue_certificate(other_ca, "east", usage="client"),
    )


def _bound_socket(port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(16)
    sock.setblocking(False)
    return sock


@dataclass
class Link:
    """Both ends of one live link, and what each end reported."""

    listener: LinkListener
    dialer: Dialer
    dial_task: asyncio.Task[None]
    reports: list[LinkReport] = field(default_factory=list)
    incoming: asyncio.Queue[tuple[LinkConnection, int | None]] = field(
        default_factory=asyncio.Queue)
    client_connections: asyncio.Queue[LinkConnection | None] = field(
        default_factory=asyncio.Queue)
    server: LinkConnection | None = None
    client: LinkConnection | None = None
    serial: int | None = None


async def _start_listener(
    pki: Pki, on_stream: StreamHandler | None, incoming: asyncio.Queue[Any],
    sock: socket.socket | None = None,
) -> LinkListener:
    listener = LinkListener(
        "inter-router", lambda: dict(WEST),
        on_incoming=lambda conn, serial: incoming.put_nowait((conn, serial)),
        on_stream=on_stream,
    )
    await listener.start(sock or _bound_socket(), pki.server_tls())
    return listener


def _start_dialer(
    port: int, tls: ssl.SSLContext, reports: list[LinkReport],
    connections: asyncio.Queue[LinkConnection | None] | None = None,
    on_stream: StreamHandler | None = None,
) -> tuple[Dialer, asyncio.Task[None]]:
    dialer = Dialer(
        LINK_NAME, DialTarget("127.0.0.1", port, tls), dict(EAST),
        report=lambda _name, report: reports.append(report),
        on_stream=on_stream,
        on_connection=(lambda _name, conn: connections.put_nowait(conn))
        if connections is not None else None,
    )
    return dialer, asyncio.create_task(dialer.run(), name="test-dialer")


@contextlib.asynccontextmanager
async def linked(
    pki: Pki,
    server_streams: StreamHandler | None = None,
    client_streams: StreamHandler | None = None,
) -> AsyncIterator[Link]:
    """A listener and a dialer with the hello done; both torn down on exit."""
    incoming: asyncio.Queue[tuple[LinkConnection, int | None]] = asyncio.Queue()
    listener = await _start_listener(pki, server_streams, incoming)
    reports: list[LinkReport] = []
    connections: asyncio.Queue[LinkConnection | None] = asyncio.Queue()
    dialer, task = _start_dialer(listener.port, pki.client_tls(), reports, connections,
                                 client_streams)
    link = Link(listener, dialer, task, reports, incoming, connections)
    try:
        async with asyncio.timeout(5):
            link.client = await connections.get()
            link.server, link.serial = await incoming.get()
        assert link.client is not None
        yield link
    finally:
        await _stop(task)
        await listener.stop()
        await asyncio.sleep(0)  # let the accept handlers see their connections close


async def _stop(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _read_all(stream: LinkStream, *, limit: int = 64 * 1024 * 1024) -> bytes:
    data = bytearray()
    while chunk := await stream.read():
        data += chunk
        assert len(data) <= limit
    return bytes(data)


def _run(coro: Awaitable[None], timeout: float = 30) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(timeout):
            await coro

    asyncio.run(bounded())


# --- the hello ----------------------------------------------------------------------------


def test_hello_tells_each_side_the_other_sites_name_and_id(pki: Pki) -> None:
    async def main() -> None:
        async with linked(pki) as link:
            assert link.server is not None and link.client is not None
            # The listener side knows the dialing site, its link and its certificate.
            assert link.server.remote_hello["siteName"] == "east"
            assert link.server.remote_hello["siteId"] == EAST["siteId"]
            assert link.server.remote_hello["link"] == LINK_NAME
            assert link.serial == pki.client.serial
            assert link.listener.connections == {link.server}
            # The dialer side knows the listening site, and reported the link operational.
            assert link.client.remote_hello["siteName"] == "west"
            assert link.client.remote_hello["siteId"] == WEST["siteId"]
            assert link.client.remote_hello["role"] == "inter-router"
            operational = [r for r in link.reports if r.operational]
            assert len(operational) == 1, link.reports
            assert operational[0].message == "OK"
            assert operational[0].remote["siteName"] == "west"
            assert operational[0].remote["siteId"] == WEST["siteId"]

    _run(main())


def test_the_listener_reports_the_connection_gone_when_the_dialer_stops(pki: Pki) -> None:
    async def main() -> None:
        async with linked(pki) as link:
            await _stop(link.dial_task)
            async with asyncio.timeout(1):
                gone, serial = await link.incoming.get()
            assert gone is link.server and serial is None
            assert link.listener.connections == set()

    _run(main())


# --- streams ------------------------------------------------------------------------------


def _echo_with(prefix: bytes) -> StreamHandler:
    async def echo(stream: LinkStream) -> None:
        data = await _read_all(stream)
        await stream.write(prefix + data)
        await stream.close()

    return echo


async def _ask(connection: LinkConnection, question: bytes) -> bytes:
    stream = connection.open_stream()
    await stream.write(question)
    await stream.close()
    return await _read_all(stream)


def test_streams_opened_by_the_dialer_carry_data_both_ways(pki: Pki) -> None:
    async def main() -> None:
        async with linked(pki, server_streams=_echo_with(b"west got: ")) as link:
            assert link.client is not None
            client = link.client
            async with asyncio.timeout(5):
                assert await _ask(client, b"from east") == b"west got: from east"
                questions = [f"east {i}".encode() for i in range(40)]
                answers = await asyncio.gather(*(_ask(client, q) for q in questions))
            assert answers == [b"west got: " + q for q in questions]
            assert client.open_stream().stream_id % 2 == 1  # the dialer's ids are odd

    _run(main())


def test_streams_opened_from_both_sides_carry_data_both_ways(pki: Pki) -> None:
    async def main() -> None:
        async with linked(pki, server_streams=_echo_with(b"west got: "),
                          client_streams=_echo_with(b"east got: ")) as link:
            assert link.server is not None and link.client is not None
            client, server = link.client, link.server
            async with asyncio.timeout(2):
                assert await _ask(client, b"from east") == b"west got: from east"
                assert await _ask(server, b"from west") == b"east got: from west"
            async with asyncio.timeout(5):
                questions = [(client, f"east {i}".encode()) for i in range(20)]
                questions += [(server, f"west {i}".encode()) for i in range(20)]
                answers = await asyncio.gather(*(_ask(c, q) for c, q in questions))
            for (conn, question), answer in zip(questions, answers, strict=True):
                side = b"west got: " if conn is client else b"east got: "
                assert answer == side + question
            assert server.open_stream().stream_id % 2 == 0  # the listener's ids are even

    _run(main())


def test_16_mib_arrive_intact_while_another_stream_stays_responsive(pki: Pki) -> None:
    payload = os.urandom(16 * 1024 * 1024)
    digest = hashlib.sha256(payload).hexdigest()
    progress: dict[str, int] = {"received": 0}

    async def main() -> None:
        first_mib = asyncio.Event()
        resume = asyncio.Event()

        async def server_streams(stream: LinkStream) -> None:
            kind = await stream.readline(64)
            if kind == b"bulk\n":
                hasher = hashlib.sha256()
                while chunk := await stream.read(256 * 1024):
                    hasher.update(chunk)
                    progress["received"] += len(chunk)
                    if progress["received"] >= 1024 * 1024 and not resume.is_set():
                        first_mib.set()
                        await resume.wait()  # a stalled reader: only its stream waits
                await stream.write(f"{progress['received']} {hasher.hexdigest()}".encode())
                await stream.close()
            else:
                while line := await stream.readline(1024):
                    await stream.write(line)
                    if line == b"bye\n":
                        break
                await stream.close()

        async with linked(pki, server_streams=server_streams) as link:
            assert link.client is not None
            bulk = link.client.open_stream()

            async def send_bulk() -> bytes:
                await bulk.write(b"bulk\n" + payload)
                await bulk.close()
                return await _read_all(bulk)

            sender = asyncio.create_task(send_bulk())
            echo = link.client.open_stream()
            await echo.write(b"echo\n")

            async def round_trip(i: int) -> float:
                began = time.monotonic()
                line = f"ping {i}\n".encode()
                await echo.write(line)
                async with asyncio.timeout(1):
                    assert await echo.readline(1024) == line
                return time.monotonic() - began

            async with asyncio.timeout(10):
                await first_mib.wait()
            # The bulk stream is stalled on its window; the echo stream is not.
            for i in range(10):
                await round_trip(i)
            assert not sender.done()
            assert progress["received"] < len(payload)
            stalled_at = progress["received"]
            # Let the bulk flow, and keep talking on the echo stream while it does.
            resume.set()
            rtts = []
            while not sender.done() and len(rtts) < 200:
                rtts.append(await round_trip(100 + len(rtts)))
            assert progress["received"] > stalled_at
            async with asyncio.timeout(60):
                answer = await sender
            assert answer.decode() == f"{len(payload)} {digest}"
            await echo.write(b"bye\n")
            assert await echo.readline(1024) == b"bye\n"
            assert await echo.read() == b""
            assert rtts, "the transfer finished before any round trip ran alongside it"

    _run(main(), timeout=90)


def test_half_close_lets_the_peer_read_eof_and_still_answer(pki: Pki) -> None:
    async def main() -> None:
        heard: asyncio.Future[tuple[bytes, bytes]] = asyncio.get_running_loop().create_future()

        async def server_streams(stream: LinkStream) -> None:
            question = await stream.read()
            end = await stream.read()  # b"": the dialer half-closed
            heard.set_result((question, end))
            await stream.write(b"answer after your close")
            await stream.close()

        async with linked(pki, server_streams=server_streams) as link:
            assert link.client is not None
            stream = link.client.open_stream()
            await stream.write(b"question")
            await stream.close()
            async with asyncio.timeout(5):
                assert await heard == (b"question", b"")
                assert await _read_all(stream) == b"answer after your close"
                assert await stream.read() == b""

    _run(main())


def test_reset_makes_the_peers_read_raise_stream_reset(pki: Pki) -> None:
    async def main() -> None:
        outcome: asyncio.Queue[object] = asyncio.Queue()
        got_first: asyncio.Queue[LinkStream] = asyncio.Queue()

        async def server_streams(stream: LinkStream) -> None:
            try:
                first = await stream.read()
                await got_first.put(stream)
                while True:
                    first += await stream.read()
            except StreamReset as exc:
                await outcome.put(exc)
            else:  # pragma: no cover - read until reset, so only reached on a bug
                await outcome.put("no reset")

        async with linked(pki, server_streams=server_streams) as link:
            assert link.client is not None
            async with asyncio.timeout(5):
                # The dialer resets: the listener's read raises.
                stream = link.client.open_stream()
                await stream.write(b"partial")
                await got_first.get()
                stream.reset()
                assert isinstance(await outcome.get(), StreamReset)
                with pytest.raises(StreamReset):
                    await stream.write(b"more")
                # The listener resets: the dialer's read raises.
                stream = link.client.open_stream()
                await stream.write(b"partial")
                remote = await got_first.get()
                remote.reset()
                with pytest.raises(StreamReset):
                    await stream.read()
                # The link itself is unharmed.
                stream = link.client.open_stream()
                await stream.write(b"still fine")
                await got_first.get()
                stream.reset()
                assert isinstance(await outcome.get(), StreamReset)

    _run(main())


# --- the connection ending ----------------------------------------------------------------


@contextlib.asynccontextmanager
async def bare_pair(pki: Pki) -> AsyncIterator[tuple[LinkConnection, LinkConnection]]:
    """Two LinkConnections over TLS, no listener or dialer around them."""
    accepted: asyncio.Queue[LinkConnection] = asyncio.Queue()
    handlers: list[asyncio.Task[Any]] = []

    async def accept(protocol: LinkProtocol) -> None:
        conn = LinkConnection(protocol, is_client=False, local_hello=dict(WEST))
        await conn.start()
        await accepted.put(conn)
        await conn.wait_closed()
        await conn.aclose("done")

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: LinkProtocol(lambda made: handlers.append(asyncio.ensure_future(accept(made)))),
        sock=_bound_socket(), ssl=pki.server_tls())
    port = server.sockets[0].getsockname()[1]
    client = LinkConnection(await dial_tls("127.0.0.1", port, pki.client_tls()),
                            is_client=True, local_hello={**EAST, "link": LINK_NAME})
    try:
        async with asyncio.timeout(5):
            await client.start()
            server_side = await accepted.get()
        yield client, server_side
    finally:
        await client.aclose("test over")
        server.close()
        await server.wait_closed()
        async with asyncio.timeout(5):
            await asyncio.gather(*handlers, return_exceptions=True)


@pytest.mark.parametrize("closing", ["dialer", "listener"])
def test_closing_the_connection_ends_it_on_the_other_side_within_1s(
    pki: Pki, closing: str
) -> None:
    async def main() -> None:
        async with bare_pair(pki) as (client, server):
            this, other = (client, server) if closing == "dialer" else (server, client)
            assert not other.is_closed
            began = time.monotonic()
            await this.aclose("closed on purpose")
            async with asyncio.timeout(1):
                reason = await other.wait_closed()
            assert time.monotonic() - began < 1
            assert isinstance(reason, str) and reason
            assert other.is_closed
            # Nothing more can be opened on a closed link.
            with pytest.raises(LinkClosed):
                other.open_stream()

    _run(main())


def test_a_broken_connection_ends_the_link_within_1s(pki: Pki) -> None:
    async def main() -> None:
        async with bare_pair(pki) as (client, server):
            open_stream = server.open_stream()
            await open_stream.write(b"x")
            began = time.monotonic()
            # No goodbye at all: the dialer's socket just goes away, as when a site dies.
            client.transport.abort()
            async with asyncio.timeout(1):
                reason = await server.wait_closed()
            assert time.monotonic() - began < 1
            assert reason
            with pytest.raises(StreamReset):
                await open_stream.read()

    _run(main())


def test_stopping_the_listener_ends_the_dialers_link_and_it_reports_it(pki: Pki) -> None:
    async def main() -> None:
        async with linked(pki) as link:
            assert link.client is not None
            await link.listener.stop()
            async with asyncio.timeout(1):
                reason = await link.client.wait_closed()
                assert reason
                while not link.reports or link.reports[-1].operational:
                    await asyncio.sleep(0.01)
            assert not link.reports[-1].operational
            assert link.reports[-1].message

    _run(main())


# --- dialing: refusals and retries --------------------------------------------------------


def test_a_dialer_to_a_closed_port_reports_not_operational_and_retries(pki: Pki) -> None:
    async def main() -> None:
        port = free_port()
        reports: list[LinkReport] = []
        _, task = _start_dialer(port, pki.client_tls(), reports)
        try:
            await asyncio.sleep(2.0)
            failures = [r for r in reports if not r.operational]
            assert len(failures) >= 3, reports  # backoff starts at 0.1 s
            assert len(failures) <= 25, reports  # ...and it does grow
            assert not any(r.operational for r in reports)
            assert not any(r.final for r in reports)
            assert all("refused" in r.message for r in failures), failures
            assert str(port) in failures[-1].message
            # The remote site comes up on that port: the dialer finds it by itself.
            incoming: asyncio.Queue[Any] = asyncio.Queue()
            listener = await _start_listener(pki, None, incoming, _bound_socket(port))
            try:
                async with asyncio.timeout(5):
                    conn, _ = await incoming.get()
                    while not reports[-1].operational:
                        await asyncio.sleep(0.01)
                assert conn.remote_hello["siteName"] == "east"
                assert reports[-1].remote["siteName"] == "west"
            finally:
                await _stop(task)
                await listener.stop()
                await asyncio.sleep(0)
        finally:
            await _stop(task)

    _run(main())


@pytest.mark.parametrize("certificate", ["foreign", "none"])
def test_the_listener_refuses_a_client_without_a_certificate_from_its_ca(
    pki: Pki, certificate: str
) -> None:
    async def main() -> None:
        incoming: asyncio.Queue[Any] = asyncio.Queue()
        listener = await _start_listener(pki, None, incoming)
        if certificate == "foreign":
            tls = pki.client_tls(pki.foreign_client)
        else:
            tls = client_context(pki.site_ca.cert_pem)
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", listener.port, ssl=tls, server_hostname="127.0.0.1")
            try:
                # TLS 1.3: the client learns of the refusal on its first read.
                writer.write(b"hello?")
                async with asyncio.timeout(5):
                    with contextlib.suppress(ssl.SSLError, ConnectionError):
                        assert await reader.read(100) == b""
            finally:
                writer.close()
                with contextlib.suppress(ssl.SSLError, ConnectionError):
                    await writer.wait_closed()
            await asyncio.sleep(0.1)
            assert incoming.empty()
            assert listener.connections == set()
        finally:
            await listener.stop()

    _run(main())


def test_a_dialer_refused_by_the_listener_reports_it_and_keeps_retrying(pki: Pki) -> None:
    async def main() -> None:
        incoming: asyncio.Queue[Any] = asyncio.Queue()
        listener = await _start_listener(pki, None, incoming)
        reports: list[LinkReport] = []
        _, task = _start_dialer(listener.port, pki.client_tls(pki.foreign_client), reports)
        try:
            async with asyncio.timeout(5):
                while len(reports) < 2 and not task.done():
                    await asyncio.sleep(0.01)
            assert not task.done(), f"the dialer died: {task.exception()!r}"
            assert not any(r.operational for r in reports)
            assert reports[0].message, reports
            assert incoming.empty()
        finally:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            await listener.stop()

    _run(main())


def test_a_peer_leaving_mid_hello_is_handled_by_the_listener(pki: Pki) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        unhandled: list[object] = []
        loop.set_exception_handler(
            lambda _loop, ctx: unhandled.append(ctx.get("exception") or ctx.get("message")))
        incoming: asyncio.Queue[Any] = asyncio.Queue()
        listener = await _start_listener(pki, None, incoming)
        try:
            # The session runs from the start; the hello is never finished.
            peer = LinkConnection(await dial_tls("127.0.0.1", listener.port, pki.client_tls()),
                                  is_client=True, local_hello=dict(EAST))
            stream = peer.open_stream()  # the hello stream...
            await stream.write(b'{"protocol": "skupper-py-link"')  # ...with half a hello
            await asyncio.sleep(0.2)
            await peer.aclose("gone mid-hello")
            await asyncio.sleep(0.5)
            assert incoming.empty()
            assert unhandled == []
        finally:
            await listener.stop()

    _run(main())


def test_a_server_certificate_from_another_ca_is_refused_by_the_dialer(pki: Pki) -> None:
    async def main() -> None:
        incoming: asyncio.Queue[Any] = asyncio.Queue()
        listener = await _start_listener(pki, None, incoming)
        other_ca = generate_ca("impostor CA")
        reports: list[LinkReport] = []
        tls = client_context(other_ca.cert_pem, cert_pem=pki.client.cert_pem,
                             key_pem=pki.client.key_pem)
        _, task = _start_dialer(listener.port, tls, reports)
        try:
            async with asyncio.timeout(5):
                while not reports:
                    await asyncio.sleep(0.01)
            assert not reports[0].operational
            assert "does not match the link's CA" in reports[0].message, reports[0]
            assert incoming.empty()
        finally:
            await _stop(task)
            await listener.stop()

    _run(main())
