"""Yamux frames: the 12-byte header, its constants, and an incremental parser.

Header layout (big-endian): version u8, type u8, flags u16, stream id u32, length u32.
``length`` is the payload size for Data, the window delta for Window Update, the
opaque value for Ping and the error code for Go Away; only Data carries a payload.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum, IntFlag
from typing import cast

VERSION = 0

HEADER = struct.Struct(">BBHII")
HEADER_SIZE = HEADER.size

# The parser buffers a whole data frame before yielding it, so this caps the memory
# one frame can pin. Peers never need more: a frame larger than the receive window
# is a flow-control violation anyway, and windows are capped at this size.
MAX_DATA_PAYLOAD = 16 * 1024 * 1024

MAX_UINT32 = 0xFFFF_FFFF


class FrameType(IntEnum):
    DATA = 0x0
    WINDOW_UPDATE = 0x1
    PING = 0x2
    GO_AWAY = 0x3


class Flag(IntFlag):
    NONE = 0x0
    SYN = 0x1
    ACK = 0x2
    FIN = 0x4
    RST = 0x8


class GoAwayCode(IntEnum):
    NORMAL = 0
    PROTOCOL_ERROR = 1
    INTERNAL_ERROR = 2


# A plain int: inverting an IntFlag stays inside the known flags and hides unknown bits.
_KNOWN_FLAGS = int(Flag.SYN | Flag.ACK | Flag.FIN | Flag.RST)

# Enum construction is slow on the per-frame hot path; look members up instead.
_TYPES = tuple(FrameType)
_FLAGS = tuple(Flag(i) for i in range(_KNOWN_FLAGS + 1))


class ProtocolError(Exception):
    """The peer broke the yamux protocol; the session must Go Away with ``code``."""

    def __init__(self, reason: str, code: GoAwayCode = GoAwayCode.PROTOCOL_ERROR) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


@dataclass(frozen=True, slots=True)
class Frame:
    type: FrameType
    flags: Flag
    stream_id: int
    length: int
    payload: bytes = b""

    def encode(self) -> bytes:
        return encode_header(self.type, self.flags, self.stream_id, self.length) + self.payload


def encode_header(frame_type: FrameType, flags: Flag, stream_id: int, length: int) -> bytes:
    return HEADER.pack(VERSION, frame_type, flags, stream_id, length)


class FrameParser:
    """Turns an arbitrarily chunked byte stream into complete frames.

    ``feed`` appends bytes at once and returns an iterator over the frames now
    complete; a frame split across feeds is held until its last byte arrives.
    After a ``ProtocolError`` the stream is unrecoverable, so the parser stays broken.
    """

    def __init__(self, max_payload: int = MAX_DATA_PAYLOAD) -> None:
        if not 0 <= max_payload <= MAX_DATA_PAYLOAD:
            raise ValueError(f"max_payload must be between 0 and {MAX_DATA_PAYLOAD}")
        self.max_payload = max_payload
        self._buf = bytearray()
        self._pos = 0  # start of the first unparsed byte in _buf
        self._error: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a frame."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes | bytearray | memoryview) -> Iterator[Frame]:
        if self._error is not None:
            raise self._error
        if not self._buf and isinstance(data, bytes | memoryview):
            # Nothing held over: parse the caller's bytes in place, so a data frame's
            # payload is copied once, not first into our buffer and then out of it.
            # (A memoryview may be the caller's reused read buffer: every payload taken
            # from it is copied out, and what is left over is copied into ours.)
            return self._frames_in(data)
        if isinstance(data, bytes | memoryview) and not self._pos:
            return self._complete_then_in_place(data)
        self._buf += data
        return self._frames()

    def _complete_then_in_place(self, data: bytes | memoryview) -> Iterator[Frame]:
        """Complete the frame held over with as few of ``data``'s bytes as it needs, then
        parse the rest in place (so one split frame does not send every later read
        through our buffer)."""
        buf = self._buf
        taken = 0
        if len(buf) < HEADER_SIZE:
            taken = min(HEADER_SIZE - len(buf), len(data))
            buf += data[:taken]
        if len(buf) >= HEADER_SIZE:
            _, ftype, _, _, length = HEADER.unpack_from(buf, 0)
            frame_size = HEADER_SIZE + (length if ftype == FrameType.DATA else 0)
            more = min(max(frame_size - len(buf), 0), len(data) - taken)
            buf += data[taken : taken + more]
            taken += more
        yield from self._frames()
        rest = data[taken:]
        if not rest:
            return
        if self._buf:  # still incomplete (or the header was bad): keep buffering
            self._buf += rest
            yield from self._frames()
        else:
            yield from self._frames_in(rest)

    def _frames_in(self, data: bytes | memoryview) -> Iterator[Frame]:
        pos, size = 0, len(data)
        copy = not isinstance(data, bytes)
        try:
            while size - pos >= HEADER_SIZE:
                version, ftype, flags, stream_id, length = HEADER.unpack_from(data, pos)
                self._check(version, ftype, flags, length)
                if ftype == FrameType.DATA:
                    end = pos + HEADER_SIZE + length
                    if size < end:
                        break
                    piece = data[pos + HEADER_SIZE : end]
                    payload = bytes(piece) if copy else cast(bytes, piece)
                else:
                    end = pos + HEADER_SIZE
                    payload = b""
                pos = end
                yield Frame(_TYPES[ftype], _FLAGS[flags], stream_id, length, payload)
        finally:
            if pos < size:  # an incomplete frame (or one not consumed yet) waits here
                with memoryview(data) as view:
                    self._buf += view[pos:]

    def _frames(self) -> Iterator[Frame]:
        buf = self._buf
        try:
            while True:
                pos = self._pos
                if len(buf) - pos < HEADER_SIZE:
                    break
                version, ftype, flags, stream_id, length = HEADER.unpack_from(buf, pos)
                self._check(version, ftype, flags, length)
                if ftype == FrameType.DATA:
                    end = pos + HEADER_SIZE + length
                    if len(buf) < end:
                        break
                    # One copy out of the buffer; the view is released before any resize.
                    with memoryview(buf) as view:
                        payload = bytes(view[pos + HEADER_SIZE : end])
                else:
                    end = pos + HEADER_SIZE
                    payload = b""
                self._pos = end
                yield Frame(_TYPES[ftype], _FLAGS[flags], stream_id, length, payload)
        finally:
            # Compact once per drain rather than per frame to keep parsing linear.
            if self._pos:
                del buf[: self._pos]
                self._pos = 0

    def _check(self, version: int, ftype: int, flags: int, length: int) -> None:
        if version != VERSION:
            self._fail(f"unsupported yamux version {version}")
        if ftype >= len(_TYPES):
            self._fail(f"unknown frame type {ftype:#x}")
        if flags & ~_KNOWN_FLAGS:
            self._fail(f"unknown flags {flags:#06x}")
        if ftype == FrameType.DATA and length > self.max_payload:
            self._fail(f"data frame of {length} bytes exceeds limit {self.max_payload}")

    def _fail(self, reason: str) -> None:
        self._error = ProtocolError(reason)
        raise self._error
