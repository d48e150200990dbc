"""Splicing: the two ends of a connection at one site, each passing bytes to the other.

Push-mode: TCP sockets are asyncio protocols and streams hand their data to an attached
receiver, so bytes cross a site in one event-loop callback, with no task per direction.
Each direction runs on its own, so each half-closes on its own (a TCP FIN becomes a
stream FIN and back), and a reset anywhere (a TCP RST, a stream RST, a link that dies)
becomes a reset at both ends: TCP ends are aborted with SO_LINGER 0, so the client sees
an RST, not a clean close. Memory stays bounded: a side that cannot pass bytes on makes
its source stop (a TCP socket stops reading; a stream withholds its window credit, so
at most one window per stream is ever held), and a slow reader holds back its own
stream, and through it the sender's TCP socket, and nothing else. When the link's TLS
socket is write-blocked, every stream sender waits its turn (``when_drained`` calls
them back in the order they waited), so many streams share the link fairly.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Callable
from typing import cast

from skupper.router.stream import LinkStream, StreamReset

_LINGER_RESET = struct.pack("ii", 1, 0)


class Side:
    """One end of a splice. Data coming *in* at one side goes *out* at its peer.

    ``deliver`` always takes the bytes; it returns False when the side cannot take more
    for now, and the peer then stops taking bytes in (a TCP socket stops reading, a
    stream withholds its window credit) until this side calls ``peer.resume_in()``.
    """

    peer: Side
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


class TcpSide(asyncio.Protocol, Side):
    """A TCP connection, driven by asyncio's callbacks: no task, no extra wake-up."""

    def __init__(self, on_made: Callable[[TcpSide], None] | None = None) -> None:
        self.transport: asyncio.Transport | None = None
        self._on_made = on_made
        # Told once when the socket is gone (the bridge closes the flow record).
        self.on_closed: Callable[[], None] | None = None
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

    # -- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport, only alike.
        self.transport = cast(asyncio.Transport, transport)
        if self.dead:  # aborted before the socket was ours
            self.dead = False
            self.abort()
            return
        if not self.peer_ready:
            self.transport.pause_reading()
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
        if self.on_closed is not None:
            self.on_closed()
            self.on_closed = None
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

    # -- Side -----------------------------------------------------------------------

    def start(self, peer: Side) -> None:
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


class StreamSide(Side):
    """A link stream in push mode (``LinkStream.attach``)."""

    def __init__(self, stream: LinkStream) -> None:
        self.stream = stream
        self._held: list[bytes | memoryview] = []  # accepted, waiting for window
        self._finish_pending = False
        self._uncredited = 0  # delivered while the peer asked us to hold back
        self._holding = False

    def start(self, peer: Side) -> None:
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

    # -- Side -------------------------------------------------------------------------

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
            self.stream.link.when_drained(self._drained)
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
