"""Application connections: TCP listeners and connectors joined by link streams.

A client connecting to a listener gets a new stream on the link that is the next hop
towards a site with a connector for the listener's routing key (``router.routing``
chooses the site). The stream's first line is a JSON header::

    {"t": "tcp", "key": "backend", "dst": "<site id>", "hops": 15}

A site that is not ``dst`` forwards: it opens a stream on its own next hop towards
``dst`` (one hop fewer) and splices the two. The ``dst`` site connects to one of its
connectors' targets (round robin) and splices the stream with that TCP connection.

Splicing is push-mode: TCP sockets are asyncio protocols and streams hand their data to
an attached receiver, so bytes cross a site in one event-loop callback, with no task
per direction. Each direction runs on its own, so each half-closes on its own (a TCP
FIN becomes a stream FIN and back), and a reset anywhere (a TCP RST, a stream RST, a
link that dies) becomes a reset at both ends: TCP ends are aborted with SO_LINGER 0,
so the client sees an RST, not a clean close. Memory stays bounded: a side that cannot
pass bytes on makes its source stop (a TCP socket stops reading; a stream withholds
its window credit, so at most one window per stream is ever held), and a slow reader
holds back its own stream, and through it the sender's TCP socket, and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from skupper.router.control import ControlPlane, encode_line, read_header
from skupper.router.flows import CLOSED, CONNECTOR, LISTENER, RESET, FlowLog, FlowRecord
from skupper.router.link import LinkClosed, LinkConnection
from skupper.router.routing import services_of
from skupper.router.stream import LinkStream, StreamReset

log = logging.getLogger(__name__)

HEADER_TCP = "tcp"
# Hops a connection may take; ends forwarding loops while routes converge.
MAX_HOPS = 16
CONNECT_TIMEOUT_SECONDS = 10.0
# Accept backlog of a listener's socket.
LISTEN_BACKLOG = 512

_LINGER_RESET = struct.pack("ii", 1, 0)


class _Side:
    """One end of a splice. Data coming *in* at one side goes *out* at its peer.

    ``deliver`` always takes the bytes; it returns False when the side cannot take more
    for now, and the peer then stops taking bytes in (a TCP socket stops reading, a
    stream withholds its window credit) until this side calls ``peer.resume_in()``.
    """

    peer: _Side
    dead = False

    def deliver(self, data: bytes) -> bool:
        raise NotImplementedError

    def finish(self) -> None:
        """The peer's input ended: half-close our output."""
        raise NotImplementedError

    def abort(self) -> None:
        """Reset this side (and, through it, the other end of the connection)."""
        raise NotImplementedError

    def resume_in(self) -> None:
        raise NotImplementedError

    def fail(self) -> None:
        """This side broke: reset both sides."""
        if not self.dead:
            self.abort()
        if not self.peer.dead:
            self.peer.abort()


class TcpSide(asyncio.Protocol, _Side):
    """A TCP connection, driven by asyncio's callbacks: no task, no extra wake-up."""

    def __init__(self, on_made: Callable[[TcpSide], None] | None = None) -> None:
        self.transport: asyncio.Transport | None = None
        self._on_made = on_made
        self._on_closed: Callable[[], None] | None = None
        self._in_done = False
        self._out_done = False
        self._write_paused = False
        self._early: list[bytes] = []  # before the peer exists (tiny: reading is paused)
        self._early_eof = False
        self.peer_ready = False
        # Bytes from the socket and bytes written to it (router.flows reads them).
        self.received = 0
        self.sent = 0
        self.was_reset = False
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # -- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport, only alike.
        self.transport = cast(asyncio.Transport, transport)
        if self.dead:  # aborted before the socket was ours
            self.dead = False
            self.abort()
            return
        if not self.peer_ready:
            transport.pause_reading()
        if self._on_made is not None:
            self._on_made(self)

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        if not self.peer_ready:
            self._early.append(data)
            return
        if not self.peer.deliver(data) and self.transport is not None:
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self._in_done = True
        if not self.peer_ready:
            self._early_eof = True
            return True
        self.peer.finish()
        self._maybe_close()
        return True  # keep the socket open for our half

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self.was_reset = True
        was_dead, self.dead = self.dead, True
        if not self.closed.done():
            self.closed.set_result(None)
        if self._on_closed is not None:
            self._on_closed()
            self._on_closed = None
        if was_dead or not self.peer_ready:
            return
        # A reset, or the socket vanished before both directions ended.
        if (exc is not None or not (self._in_done and self._out_done)) \
                and not self.peer.dead:
            self.peer.abort()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self.peer_ready and not self.peer.dead:
            self.peer.resume_in()

    # -- _Side -----------------------------------------------------------------------

    def start(self, peer: _Side) -> None:
        """The peer exists: pass on what arrived meanwhile and start reading."""
        self.peer, self.peer_ready = peer, True
        early, self._early = self._early, []
        for data in early:
            peer.deliver(data)
        if self._early_eof:
            peer.finish()
        elif self.transport is not None and not self.dead:
            self.transport.resume_reading()

    def deliver(self, data: bytes) -> bool:
        if self.dead or self.transport is None:
            return True
        self.sent += len(data)
        self.transport.write(data)
        return not self._write_paused

    def finish(self) -> None:
        if self.dead or self.transport is None:
            return
        self._out_done = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._maybe_close()

    def abort(self) -> None:
        """Abort with an RST so the other end sees a reset, not an orderly close."""
        if self.dead:
            return
        self.dead = self.was_reset = True
        if self.transport is None:
            return
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        self.transport.abort()

    def resume_in(self) -> None:
        if not self.dead and self.transport is not None:
            self.transport.resume_reading()

    def _maybe_close(self) -> None:
        if self._in_done and self._out_done and self.transport is not None:
            self.transport.close()


class StreamSide(_Side):
    """A link stream in push mode (``LinkStream.attach``)."""

    def __init__(self, stream: LinkStream) -> None:
        self.stream = stream
        self._held: list[bytes | memoryview] = []  # accepted, waiting for window
        self._finish_pending = False
        self._uncredited = 0  # delivered while the peer asked us to hold back
        self._holding = False

    def start(self, peer: _Side) -> None:
        self.peer = peer
        self.stream.attach(self)
        self._push_held()

    # -- from the stream ---------------------------------------------------------------

    def stream_data(self, data: bytes) -> None:
        if self.peer.dead:
            return
        if self.peer.deliver(data) and not self._holding:
            self.stream.consume(len(data))
        else:
            self._holding = True
            self._uncredited += len(data)

    def stream_eof(self) -> None:
        if not self.peer.dead:
            self.peer.finish()

    def stream_reset(self, reason: str) -> None:
        self.dead = True
        if not self.peer.dead:
            self.peer.abort()

    def stream_writable(self) -> None:
        self._push_held()

    # -- _Side -------------------------------------------------------------------------

    def deliver(self, data: bytes) -> bool:
        if self.dead:
            return True
        if self._held:
            self._held.append(data)
            return False
        try:
            sent = self.stream.send_some(data)
        except StreamReset:
            self.fail()
            return True
        if sent < len(data):
            self._held.append(memoryview(data)[sent:])
            return False
        if self.stream.link.congested:
            _after_drain(self.stream.link, self._drained)
            return False
        return True

    def _drained(self) -> None:
        if not self.dead and not self._held and not self.peer.dead:
            self.peer.resume_in()

    def _push_held(self) -> None:
        if self.dead or not self._held:
            return
        try:
            while self._held:
                chunk = self._held[0]
                sent = self.stream.send_some(chunk)
                if sent < len(chunk):
                    self._held[0] = memoryview(chunk)[sent:]
                    return
                self._held.pop(0)
        except StreamReset:
            self.fail()
            return
        if self._finish_pending:
            self._finish_pending = False
            self.stream.close_nowait()
        if not self.peer.dead:
            self.peer.resume_in()

    def finish(self) -> None:
        if self.dead:
            return
        if self._held:
            self._finish_pending = True
        else:
            self.stream.close_nowait()

    def abort(self) -> None:
        if not self.dead:
            self.dead = True
            self.stream.reset()

    def resume_in(self) -> None:
        self._holding = False
        if self._uncredited and not self.dead:
            count, self._uncredited = self._uncredited, 0
            self.stream.consume(count)


# Links with push-mode senders waiting for their TLS socket to drain.
_drain_waiters: dict[LinkConnection, list[Callable[[], None]]] = {}


def _after_drain(link: LinkConnection, callback: Callable[[], None]) -> None:
    waiters = _drain_waiters.get(link)
    if waiters is not None:
        waiters.append(callback)
        return
    _drain_waiters[link] = [callback]

    async def wait() -> None:
        try:
            with contextlib.suppress(Exception):
                await link.drain()
        finally:
            for waiting in _drain_waiters.pop(link, []):
                waiting()

    task = asyncio.ensure_future(wait())
    _background.add(task)
    task.add_done_callback(_background.discard)


_background: set[asyncio.Task[None]] = set()


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
        self.flows = FlowLog()

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

        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: self._accepted(name), host, port,
                                          reuse_address=True, backlog=LISTEN_BACKLOG)
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

    def _accepted(self, name: str) -> TcpSide:
        """A client connected to listener ``name``: route it once the socket is set up."""
        return TcpSide(on_made=lambda side: self._spawn(self._route_client(name, side)))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _route_client(self, name: str, client: TcpSide) -> None:
        listener = self._listeners.get(name)
        table = self.control.table
        route = table.choose(listener.target.key) if listener is not None else None
        local = self.control.local_id
        if listener is None or route is None:
            if listener is not None:
                log.info("no reachable connector for %s: connection refused",
                         listener.target.key)
                self.flows.refuse(listener.target.key, _address(client), local)
            client.abort()
            return
        key = listener.target.key
        table.opened(route.site_id)
        self.active += 1
        client_address = _address(client)
        record = self.flows.opened(LISTENER, key, client_address, local, route.site_id,
                                   table.path(route.site_id), client)

        def closed() -> None:
            self.active -= 1
            table.closed(route.site_id)
            self._flow_closed(record, client)

        client._on_closed = closed
        if client.dead:  # the client left while we were choosing
            closed()
            client._on_closed = None
            return
        if route.site_id == self.control.local_id:
            target = await self._connect_local(key)
            if target is None:
                client.abort()
                return
            if client.dead:  # the client left while we connected
                target.abort()
                return
            client.start(target)
            target.start(client)
            return
        stream = self._open(route.next_hop, key, route.site_id, MAX_HOPS,
                            {"src": local, "client": client_address})
        if stream is None:
            client.abort()
            return
        side = StreamSide(stream)
        client.start(side)
        side.start(client)

    def _open(self, next_hop: str, key: str, dst: str, hops: int,
              origin: dict[str, str]) -> LinkStream | None:
        """A stream towards ``dst``; ``origin`` (source site, client address) rides along."""
        conn: LinkConnection | None = self.control.connection_to(next_hop)
        if conn is None:
            return None
        try:
            stream = conn.open_stream()
            # The header fits the initial window, so this never waits.
            stream.send_now(encode_line({"t": HEADER_TCP, "key": key, "dst": dst,
                                         "hops": hops, **origin}))
        except (LinkClosed, StreamReset, Exception) as exc:
            log.info("cannot open a stream towards %s: %s", dst, exc)
            return None
        return stream

    async def _connect_local(self, key: str) -> TcpSide | None:
        targets = [t for t in self._connectors.values() if t.key == key]
        if not targets:
            return None
        target = targets[next(self._turn) % len(targets)]
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                _, side = await loop.create_connection(TcpSide, target.host, target.port)
        except (OSError, TimeoutError) as exc:
            log.info("connector %s cannot reach %s:%d: %s", target.name, target.host,
                     target.port, exc)
            return None
        return side

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
            await self._forward(stream, header)
        else:
            stream.reset()

    async def _forward(self, stream: LinkStream, header: dict[str, Any]) -> None:
        key, dst, hops = header.get("key"), header.get("dst"), header.get("hops")
        # The header comes from the previous hop: a hop count past MAX_HOPS (or not a
        # number) would let a connection loop longer than the limit allows.
        if not isinstance(key, str) or not isinstance(dst, str) or not isinstance(hops, int) \
                or isinstance(hops, bool) or not 0 < hops <= MAX_HOPS:
            stream.reset()
            return
        incoming = StreamSide(stream)
        origin = _origin(header)
        if dst == self.control.local_id:
            target = await self._connect_local(key)
            if target is None:
                stream.reset()
                return
            self.active += 1
            source = origin["src"]
            path = self.control.table.path(source)[::-1] or [source, dst]
            record = self.flows.opened(CONNECTOR, key, origin["client"], source, dst, path,
                                       target)

            def closed() -> None:
                self.active -= 1
                self._flow_closed(record, target)

            target._on_closed = closed
            target.start(incoming)
            incoming.start(target)
            return
        route = self.control.table.route(dst)
        onward = None
        if hops > 1 and route is not None and route.next_hop:
            onward = self._open(route.next_hop, key, dst, hops - 1, origin)
        if onward is None:
            stream.reset()
            return
        outgoing = StreamSide(onward)
        incoming.peer, outgoing.peer = outgoing, incoming
        incoming.start(outgoing)
        outgoing.start(incoming)

    def _flow_closed(self, record: FlowRecord, end: TcpSide) -> None:
        self.flows.closed(record, RESET if end.was_reset else CLOSED)


def _address(side: TcpSide) -> str:
    """``host:port`` of a TCP end's peer (``[host]:port`` for IPv6)."""
    peer = side.transport.get_extra_info("peername") if side.transport is not None else None
    if not isinstance(peer, tuple) or len(peer) < 2:
        return ""
    host = str(peer[0])
    return f"[{host}]:{peer[1]}" if ":" in host else f"{host}:{peer[1]}"


def _origin(header: dict[str, Any]) -> dict[str, str]:
    """Where a forwarded connection comes from, as its header says (bounded; may be absent)."""
    src, client = header.get("src"), header.get("client")
    return {"src": src if isinstance(src, str) and len(src) <= 64 else "",
            "client": client if isinstance(client, str) and len(client) <= 64 else ""}
