"""One multiplexed stream of a link, with asyncio reads and flow-controlled writes.

Reading hands consumed bytes back to the session, which reopens the peer's window:
a slow reader therefore slows only its own stream, and buffers stay bounded by the
window.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from skupper.router.link import LinkConnection


class StreamReset(ConnectionError):
    """The stream was reset, or its link closed, before it finished."""


class LinkStream:
    def __init__(self, link: LinkConnection, stream_id: int) -> None:
        self._link = link
        self.stream_id = stream_id
        self._buffer = bytearray()
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._eof = False
        self._error: str | None = None
        self._write_closed = False

    # -- called by the link ---------------------------------------------------------

    def feed(self, data: bytes) -> None:
        self._buffer += data
        self._readable.set()

    def feed_eof(self) -> None:
        self._eof = True
        self._readable.set()

    def window_opened(self) -> None:
        self._writable.set()

    def abort(self, reason: str) -> None:
        if self._error is None:
            self._error = reason
        self._readable.set()
        self._writable.set()

    # -- used by applications ------------------------------------------------------

    @property
    def link(self) -> LinkConnection:
        return self._link

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
            self._readable.clear()
            await self._readable.wait()
        chunk = bytes(self._buffer[:limit])
        del self._buffer[:limit]
        self._consumed(len(chunk))
        return chunk

    async def readline(self, limit: int) -> bytes:
        while b"\n" not in self._buffer:
            if len(self._buffer) > limit:
                raise StreamReset("line too long")
            if self._eof or self._error is not None:
                raise StreamReset(self._error or "stream ended before a full line")
            self._readable.clear()
            await self._readable.wait()
        end = self._buffer.index(b"\n") + 1
        line = bytes(self._buffer[:end])
        del self._buffer[:end]
        self._consumed(len(line))
        return line

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
            accepted = session.send(self.stream_id, bytes(view[:window])) if window else 0
            if accepted:
                view = view[accepted:]
                self._link.flush()
                await self._link.drain()
            else:
                self._writable.clear()
                await self._writable.wait()

    async def close(self) -> None:
        """Half-close: we send no more; the peer may still send."""
        if self._write_closed or self._error is not None or self._link.is_closed:
            return
        self._write_closed = True
        if self._link.session.close_stream(self.stream_id):
            self._link.streams.pop(self.stream_id, None)  # both directions are done
        self._link.flush()

    def reset(self) -> None:
        if self._error is None and not self._link.is_closed:
            self._link.session.reset_stream(self.stream_id)
            self._link.flush()
        self._link.streams.pop(self.stream_id, None)
        self.abort("reset by this end")
