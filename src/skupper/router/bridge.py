"""Application connections: TCP listeners and connectors joined by link streams.

A client connecting to a listener gets a new stream on the link that is the next hop
towards a site with a connector for the listener's routing key (``router.routing``
chooses the site). The stream starts with a header (``router.stream_header``: the
routing key, the destination site, a hop count, where the connection came from).

A site that is not the destination forwards: it opens a stream on its own next hop
towards it (one hop fewer) and splices the two. The destination connects to one of its
connectors' targets (round robin) and splices the stream with that TCP connection
(``router.splice``: push mode, half-closes, resets, bounded memory).

Opening is callback-driven: a client's connect, a stream's header and the splice happen
in the callbacks that bring them, with no task per connection, except where the loop
offers only a coroutine: the connect to a connector's target.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from dataclasses import dataclass
from typing import Any

from skupper.router.control import ControlPlane
from skupper.router.flows import CLOSED, CONNECTOR, LISTENER, RESET, FlowLog, FlowRecord
from skupper.router.link import LinkClosed, LinkConnection
from skupper.router.routing import services_of
from skupper.router.splice import StreamSide, TcpSide
from skupper.router.stream import LinkStream, StreamReset
from skupper.router.stream_header import (
    BINARY_HEADERS,
    KIND_CONTROL,
    KIND_TCP,
    HeaderReader,
    encode_tcp,
)

log = logging.getLogger(__name__)

__all__ = ["MAX_HOPS", "ServiceBridge", "StreamSide", "Target", "TcpSide"]

# Hops a connection may take; ends forwarding loops while routes converge.
MAX_HOPS = 16
CONNECT_TIMEOUT_SECONDS = 10.0
# Accept backlog of a listener's socket.
LISTEN_BACKLOG = 512


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
        return TcpSide(on_made=lambda side: self._route_client(name, side))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _route_client(self, name: str, client: TcpSide) -> None:
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

        client.on_closed = closed
        if client.dead:  # the socket went while it was being set up
            closed()
            client.on_closed = None
            return
        if route.site_id == local:
            self._spawn(self._splice_local(key, client))
            return
        stream = self._open(route.next_hop, key, route.site_id, MAX_HOPS,
                            {"src": local, "client": client_address})
        if stream is None:
            client.abort()
            return
        side = StreamSide(stream)
        client.start(side)
        side.start(client)

    async def _splice_local(self, key: str, client: TcpSide) -> None:
        """A client of this site's own connector: connect to it, then splice."""
        target = await self._connect_local(key)
        if target is None:
            client.abort()
            return
        if client.dead:  # the client left while we connected
            target.abort()
            return
        client.start(target)
        target.start(client)

    def _open(self, next_hop: str, key: str, dst: str, hops: int,
              origin: dict[str, str]) -> LinkStream | None:
        """A stream towards ``dst``; ``origin`` (source site, client address) rides along."""
        conn: LinkConnection | None = self.control.connection_to(next_hop)
        if conn is None:
            return None
        binary = conn.remote_hello.get("streamHeader", 0) >= BINARY_HEADERS
        try:
            stream = conn.open_stream()
            # The header fits the initial window, so this never waits.
            stream.send_now(encode_tcp(key, dst, hops, origin, binary=binary))
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

    def on_stream(self, stream: LinkStream) -> None:
        """Every stream a peer opens on any link comes here first: read its header."""
        stream.attach(HeaderReader(stream, self._on_header))

    def _on_header(self, stream: LinkStream, header: dict[str, Any] | None,
                   rest: bytes) -> None:
        kind = header.get("t") if header is not None else None
        if header is None:
            stream.reset()
        elif kind == KIND_CONTROL:
            self._spawn(self.control.accept(stream))
        elif kind == KIND_TCP:
            self._forward(stream, header)
        else:
            stream.reset()

    def _forward(self, stream: LinkStream, header: dict[str, Any]) -> None:
        key, dst, hops = header.get("key"), header.get("dst"), header.get("hops")
        # The header comes from the previous hop: a hop count past MAX_HOPS (or not a
        # number) would let a connection loop longer than the limit allows.
        if not isinstance(key, str) or not isinstance(dst, str) or not isinstance(hops, int) \
                or isinstance(hops, bool) or not 0 < hops <= MAX_HOPS:
            stream.reset()
            return
        origin = _origin(header)
        if dst == self.control.local_id:
            self._spawn(self._deliver_local(stream, key, dst, origin))
            return
        route = self.control.table.route(dst)
        onward = None
        if hops > 1 and route is not None and route.next_hop:
            onward = self._open(route.next_hop, key, dst, hops - 1, origin)
        if onward is None:
            stream.reset()
            return
        incoming, outgoing = StreamSide(stream), StreamSide(onward)
        incoming.peer, outgoing.peer = outgoing, incoming
        incoming.start(outgoing)
        outgoing.start(incoming)

    async def _deliver_local(self, stream: LinkStream, key: str, dst: str,
                             origin: dict[str, str]) -> None:
        """A connection for this site's connector: connect to its target, then splice.

        Meanwhile what the stream brings waits in it, uncredited (one window at most).
        """
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

        target.on_closed = closed
        incoming = StreamSide(stream)
        target.start(incoming)
        incoming.start(target)

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
