"""Application connections: TCP listeners and connectors joined by link streams.

A client connecting to a listener gets a new stream on the link that is the next hop
towards a site with a connector for the listener's routing key (``router.routing``
chooses the site). The stream's first line is a JSON header::

    {"t": "tcp", "key": "backend", "dst": "<site id>", "hops": 15}

A site that is not ``dst`` forwards: it opens a stream on its own next hop towards
``dst`` (one hop fewer) and splices the two. The ``dst`` site connects to one of its
connectors' targets (round robin) and splices the stream with that TCP connection.

Splicing copies both directions independently, so each half-closes on its own (a TCP
FIN becomes a stream FIN and back), and a reset anywhere (a TCP RST, a stream RST, a
link that dies) becomes a reset at both ends: TCP ends are aborted with SO_LINGER 0,
so the client sees an RST, not a clean close. Nothing is buffered beyond one read
chunk per direction: a slow reader holds back its own stream's window, and through it
the sender's TCP socket, and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import struct
from dataclasses import dataclass
from typing import Any, Protocol

from skupper.router.control import ControlPlane, encode_line, read_header
from skupper.router.link import LinkClosed, LinkConnection
from skupper.router.routing import services_of
from skupper.router.stream import LinkStream, StreamReset

log = logging.getLogger(__name__)

HEADER_TCP = "tcp"
# Hops a connection may take; ends forwarding loops while routes converge.
MAX_HOPS = 16
# One read per direction per connection is all we hold.
READ_CHUNK = 64 * 1024
CONNECT_TIMEOUT_SECONDS = 10.0
# Accept backlog of a listener's socket.
LISTEN_BACKLOG = 512

_LINGER_RESET = struct.pack("ii", 1, 0)


class End(Protocol):
    async def read(self) -> bytes: ...
    async def write(self, data: bytes) -> None: ...
    async def shutdown_write(self) -> None: ...
    def reset(self) -> None: ...
    def close(self) -> None: ...


class TcpEnd:
    __slots__ = ("_reader", "_writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self) -> bytes:
        return await self._reader.read(READ_CHUNK)

    async def write(self, data: bytes) -> None:
        self._writer.write(data)
        await self._writer.drain()

    async def shutdown_write(self) -> None:
        if not self._writer.is_closing() and self._writer.can_write_eof():
            self._writer.write_eof()

    def reset(self) -> None:
        """Abort with an RST so the other end sees a reset, not an orderly close."""
        sock = self._writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        self._writer.transport.abort()

    def close(self) -> None:
        self._writer.close()


class StreamEnd:
    __slots__ = ("stream",)

    def __init__(self, stream: LinkStream) -> None:
        self.stream = stream

    async def read(self) -> bytes:
        return await self.stream.read(READ_CHUNK)

    async def write(self, data: bytes) -> None:
        await self.stream.write(data)

    async def shutdown_write(self) -> None:
        await self.stream.close()

    def reset(self) -> None:
        self.stream.reset()

    def close(self) -> None:
        pass  # a stream is freed once both sides finished (or it was reset)


async def _pump(src: End, dst: End) -> None:
    while data := await src.read():
        await dst.write(data)
    await dst.shutdown_write()


async def splice(a: End, b: End) -> None:
    """Copy a->b and b->a until both directions ended; a reset ends both with a reset."""
    forward = asyncio.ensure_future(_pump(a, b))
    backward = asyncio.ensure_future(_pump(b, a))
    failed = False
    try:
        done, _ = await asyncio.wait((forward, backward),
                                     return_when=asyncio.FIRST_EXCEPTION)
        failed = any(t.exception() is not None for t in done)
    except asyncio.CancelledError:
        failed = True
        raise
    finally:
        for task in (forward, backward):
            if not task.done():
                task.cancel()
        if failed:
            a.reset()
            b.reset()
        else:
            a.close()
            b.close()
        # Retrieve the outcome so no "exception never retrieved" is logged.
        await asyncio.gather(forward, backward, return_exceptions=True)


@dataclass(frozen=True)
class Target:
    name: str
    key: str
    host: str
    port: int


class _TcpListener:
    def __init__(self, target: Target, server: asyncio.Server) -> None:
        self.target = target
        self.server = server


class ServiceBridge:
    """This site's listeners and connectors, and the forwarding of others' streams."""

    def __init__(self, control: ControlPlane) -> None:
        self.control = control
        self._listeners: dict[str, _TcpListener] = {}
        self._connectors: dict[str, Target] = {}
        self._turn = itertools.count()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.active = 0  # application connections this site takes part in

    # -- configuration -------------------------------------------------------------------

    async def ensure_listener(self, name: str, key: str, host: str, port: int) -> None:
        """Listen on host:port for ``key`` (rebinding only if the address changed)."""
        target = Target(name, key, host, port)
        current = self._listeners.get(name)
        if current is not None and (current.target.host, current.target.port) == (host, port):
            current.target = target
            self._advertise()
            return
        await self.remove_listener(name)

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._client(name, reader, writer)

        server = await asyncio.start_server(accept, host, port, reuse_address=True,
                                            backlog=LISTEN_BACKLOG)
        self._listeners[name] = _TcpListener(target, server)
        self._advertise()

    async def remove_listener(self, name: str) -> None:
        listener = self._listeners.pop(name, None)
        if listener is None:
            return
        listener.server.close()
        self._advertise()

    def ensure_connector(self, name: str, key: str, host: str, port: int) -> None:
        self._connectors[name] = Target(name, key, host, port)
        self._advertise()

    def remove_connector(self, name: str) -> None:
        if self._connectors.pop(name, None) is not None:
            self._advertise()

    def _advertise(self) -> None:
        self.control.set_services(services_of(
            ((t.name, t.key) for t in self._connectors.values()),
            ((lt.target.name, lt.target.key) for lt in self._listeners.values()),
        ))

    async def stop(self) -> None:
        for name in list(self._listeners):
            await self.remove_listener(name)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- status --------------------------------------------------------------------------

    def listener_names(self) -> list[str]:
        return list(self._listeners)

    def connector_names(self) -> list[str]:
        return list(self._connectors)

    # -- connections ---------------------------------------------------------------------

    async def _client(self, name: str, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        client = TcpEnd(reader, writer)
        try:
            listener = self._listeners.get(name)
            if listener is None:
                client.reset()
                return
            await self._route_client(listener.target.key, client)
        finally:
            if task is not None:
                self._tasks.discard(task)

    async def _route_client(self, key: str, client: TcpEnd) -> None:
        table = self.control.table
        route = table.choose(key)
        if route is None:
            log.info("no reachable connector for %s: connection refused", key)
            client.reset()
            return
        table.opened(route.site_id)
        self.active += 1
        try:
            if route.site_id == self.control.local_id:
                target = await self._connect_local(key)
                if target is None:
                    client.reset()
                    return
                await splice(client, target)
                return
            stream = self._open(route.next_hop, key, route.site_id, MAX_HOPS)
            if stream is None:
                client.reset()
                return
            await splice(client, StreamEnd(stream))
        finally:
            self.active -= 1
            table.closed(route.site_id)

    def _open(self, next_hop: str, key: str, dst: str, hops: int) -> LinkStream | None:
        conn: LinkConnection | None = self.control.connection_to(next_hop)
        if conn is None:
            return None
        try:
            stream = conn.open_stream()
        except (LinkClosed, Exception) as exc:
            log.info("cannot open a stream towards %s: %s", dst, exc)
            return None
        # The header fits the initial window, so this never waits.
        stream.send_now(encode_line({"t": HEADER_TCP, "key": key, "dst": dst, "hops": hops}))
        return stream

    async def _connect_local(self, key: str) -> TcpEnd | None:
        targets = [t for t in self._connectors.values() if t.key == key]
        if not targets:
            return None
        target = targets[next(self._turn) % len(targets)]
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                reader, writer = await asyncio.open_connection(target.host, target.port)
        except (OSError, TimeoutError) as exc:
            log.info("connector %s cannot reach %s:%d: %s", target.name, target.host,
                     target.port, exc)
            return None
        return TcpEnd(reader, writer)

    async def on_stream(self, stream: LinkStream) -> None:
        """Every stream a peer opens on any link comes here first."""
        try:
            header = await read_header(stream)
        except StreamReset:
            stream.reset()
            return
        kind = header.get("t")
        if kind == "ctl":
            await self.control.accept(stream)
        elif kind == HEADER_TCP:
            self.active += 1
            try:
                await self._forward(stream, header)
            finally:
                self.active -= 1
        else:
            stream.reset()

    async def _forward(self, stream: LinkStream, header: dict[str, Any]) -> None:
        key, dst, hops = header.get("key"), header.get("dst"), header.get("hops")
        if not isinstance(key, str) or not isinstance(dst, str) or not isinstance(hops, int):
            stream.reset()
            return
        if dst == self.control.local_id:
            target = await self._connect_local(key)
            if target is None:
                stream.reset()
                return
            await splice(StreamEnd(stream), target)
            return
        route = self.control.table.route(dst)
        onward = None
        if hops > 1 and route is not None and route.next_hop:
            onward = self._open(route.next_hop, key, dst, hops - 1)
        if onward is None:
            stream.reset()
            return
        await splice(StreamEnd(stream), StreamEnd(onward))
