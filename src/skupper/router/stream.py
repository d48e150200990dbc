"""One multiplexed stream of a link, with asyncio reads and flow-controlled writes.

Reading hands consumed bytes back to the session, which reopens the peer's window:
a slow reader therefore slows only its own stream, and buffers stay bounded by the
window.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from skupper.router.link import LinkConnection


class StreamReset(ConnectionError):
    """The stream was reset, or its link closed, before it finished."""


class StreamReceiver(Protocol):
    """Callbacks for a stream in push mode (``LinkStream.attach``)."""

    def stream_data(self, data: bytes) -> None: ...
    def stream_eof(self) -> None: ...
    def stream_reset(self, reason: str) -> None: ...
    def stream_writable(self) -> None: ...


class LinkStream:
    def __init__(self, link: LinkConnection, stream_id: int) -> None:
        self._link = link
        self.stream_id = stream_id
        self._buffer = bytearray()
        # Made when a reader or writer first waits: a stream in push mode (every
        # connection the bridge carries) never needs them, and each costs ~0.7 KiB.
        self._readable: asyncio.Event | None = None
        self._writable: asyncio.Event | None = None
        self._eof = False
        self._error: str | None = None
        self._write_closed = False
        # Set by ``attach``: data goes straight to it (no buffer, no task wake-up).
        self._receiver: StreamReceiver | None = None

    # -- called by the link ---------------------------------------------------------

    def feed(self, data: bytes) -> None:
        if self._receiver is not None:
            self._receiver.stream_data(data)
            return
        self._buffer += data
        if self._readable is not None:
            self._readable.set()

    def feed_eof(self) -> None:
        self._eof = True
        if self._receiver is not None:
            self._receiver.stream_eof()
        if self._readable is not None:
            self._readable.set()

    def window_opened(self) -> None:
        if self._receiver is not None:
            self._receiver.stream_writable()
        if self._writable is not None:
            self._writable.set()

    def abort(self, reason: str) -> None:
        first = self._error is None
        if first:
            self._error = reason
        if self._readable is not None:
            self._readable.set()
        if self._writable is not None:
            self._writable.set()
        if first and self._receiver is not None:
            self._receiver.stream_reset(reason)

    # -- used by applications ------------------------------------------------------

    @property
    def link(self) -> LinkConnection:
        return self._link

    def attach(self, receiver: StreamReceiver) -> None:
        """Hand everything this stream receives to ``receiver`` from now on, at once.

        Bytes already buffered come first. The receiver credits the peer's window with
        ``consume`` when it has passed bytes on, so flow control still holds.
        """
        self._receiver = receiver
        if self._buffer:
            data = bytes(self._buffer)
            self._buffer.clear()
            receiver.stream_data(data)
        if self._error is not None:
            receiver.stream_reset(self._error)
        elif self._eof:
            receiver.stream_eof()

    def detach(self, held: bytes) -> None:
        """Stop pushing: ``held`` (received, not yet credited) is what is read or pushed
        next, by ``read`` or by the next ``attach``."""
        self._receiver = None
        self._buffer[:0] = held

    def consume(self, count: int) -> None:
        """Credit ``count`` bytes handed to an attached receiver back to the peer."""
        self._consumed(count)

    def send_some(self, data: bytes | memoryview) -> int:
        """Send as much of ``data`` as the window allows, without waiting; the count."""
        if self._error is not None:
            raise StreamReset(self._error)
        if type(data) is bytes and (sent := self._link.send_now(self.stream_id, data)):
            return sent
        session = self._link.session
        window = session.send_window(self.stream_id)
        if not window:
            return 0
        sent = session.send(self.stream_id, data if len(data) <= window else data[:window])
        self._link.flush()
        return sent

    def close_nowait(self) -> None:
        """Half-close (as ``close``), for callers that cannot await."""
        if self._write_closed or self._error is not None or self._link.is_closed:
            return
        self._write_closed = True
        if self._link.session.close_stream(self.stream_id):
            self._link.streams.pop(self.stream_id, None)  # both directions are done
        self._link.flush()

    def send_now(self, data: bytes) -> None:
        """Queue ``data`` without waiting; it must fit the send window (a new stream's
        first few bytes always do). Raises StreamReset otherwise."""
        if self._error is not None:
            raise StreamReset(self._error)
        if self._link.session.send(self.stream_id, data) != len(data):
            raise StreamReset("the stream's send window is too small")
        self._link.flush()

    @property
    def at_eof(self) -> bool:
        return self._eof and not self._buffer

    async def read(self, limit: int = 65536) -> bytes:
        """Up to ``limit`` bytes; b"" at the end of the stream. Raises StreamReset."""
        while not self._buffer:
            if self._eof:
                return b""
            if self._error is not None:
                raise StreamReset(self._error)
            await self._wait_readable()
        chunk = bytes(self._buffer[:limit])
        del self._buffer[:limit]
        self._consumed(len(chunk))
        return chunk

    async def readline(self, limit: int) -> bytes:
        """One line, newline included, of at most ``limit`` bytes in all.

        The bound holds for the whole line, however the bytes arrived (one frame or
        many): a longer line raises StreamReset("line too long") and is not consumed.
        """
        while (end := self._buffer.find(b"\n", 0, limit) + 1) == 0:
            if len(self._buffer) >= limit:
                raise StreamReset("line too long")
            if self._eof or self._error is not None:
                raise StreamReset(self._error or "stream ended before a full line")
            await self._wait_readable()
        line = bytes(self._buffer[:end])
        del self._buffer[:end]
        self._consumed(len(line))
        return line

    async def _wait_readable(self) -> None:
        if self._readable is None:
            self._readable = asyncio.Event()
        self._readable.clear()
        await self._readable.wait()

    def _consumed(self, count: int) -> None:
        if count and not self._link.is_closed and self._error is None:
            self._link.session.consumed(self.stream_id, count)
            self._link.flush()

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._error is not None:
                raise StreamReset(self._error)
            session = self._link.session
            window = session.send_window(self.stream_id)
            accepted = session.send(self.stream_id, view[:window]) if window else 0
            if accepted:
                view = view[accepted:]
                self._link.flush()
                await self._link.drain()
            else:
                if self._writable is None:
                    self._writable = asyncio.Event()
                self._writable.clear()
                await self._writable.wait()

    async def close(self) -> None:
        """Half-close: we send no more; the peer may still send."""
        self.close_nowait()

    def reset(self) -> None:
        if self._error is None and not self._link.is_closed:
            self._link.session.reset_stream(self.stream_id)
            self._link.flush()
        self._link.streams.pop(self.stream_id, None)
        self.abort("reset by this end")
