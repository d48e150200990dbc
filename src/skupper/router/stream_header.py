"""The header that starts every stream a site opens on a link: what the stream carries.

Two encodings, told apart by the first byte:

- a JSON line (``{``): ``{"t": "ctl"}`` for a link's control stream, and
  ``{"t": "tcp", "key", "dst", "hops", "src", "client"}`` for a connection, as every
  site of the first link protocol version sends it;
- binary (``0xB5``), for connections only, cheaper to write and to parse than JSON when
  connections arrive at a high rate: the magic byte, the hop count (u8), then four
  strings, each a u8 length and that many UTF-8 bytes: routing key, destination site
  id, source site id, client address.

Compatibility with sites of the previous version: a site's link hello says which
headers it reads (``"streamHeader": 2``: both). A site sends the binary header only on
a link whose peer's hello said so, and reads both always. An older site's hello says
nothing, so it is sent JSON lines and keeps working; it never receives a binary header.

A header comes from the previous hop and is untrusted: both encodings are bounded
(MAX_HEADER_BYTES), and fields are type-checked by whoever takes the stream.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from skupper.router.hello import STREAM_HEADERS
from skupper.router.stream import LinkStream

KIND_TCP = "tcp"
KIND_CONTROL = "ctl"
# The streamHeader level of a hello whose site reads binary headers.
BINARY_HEADERS = STREAM_HEADERS
# A stream's header; a few hundred bytes in practice.
MAX_HEADER_BYTES = 4096
BINARY_MAGIC = 0xB5
_FIELDS = ("key", "dst", "src", "client")

# Told the header (None: malformed or missing) and the bytes that followed it.
HeaderCallback = Callable[[LinkStream, dict[str, Any] | None, bytes], None]


def encode_line(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode() + b"\n"


def encode_tcp(key: str, dst: str, hops: int, origin: dict[str, str], *,
               binary: bool) -> bytes:
    """A connection's header; binary when the next hop reads it (``BINARY_HEADERS``)."""
    fields = [key.encode(), dst.encode(), origin.get("src", "").encode(),
              origin.get("client", "").encode()]
    if not binary or not 0 <= hops <= 255 or any(len(f) > 255 for f in fields):
        return encode_line({"t": KIND_TCP, "key": key, "dst": dst, "hops": hops, **origin})
    out = bytearray((BINARY_MAGIC, hops))
    for value in fields:
        out.append(len(value))
        out += value
    return bytes(out)


def parse(buffer: bytes | bytearray) -> tuple[dict[str, Any] | None, int]:
    """The header at the start of ``buffer`` and its size; (None, 0) while incomplete.

    Raises ValueError for a malformed header, or one longer than MAX_HEADER_BYTES.
    """
    if not buffer:
        return None, 0
    if buffer[0] == BINARY_MAGIC:
        return _parse_binary(buffer)
    end = buffer.find(b"\n", 0, MAX_HEADER_BYTES) + 1
    if end == 0:
        if len(buffer) >= MAX_HEADER_BYTES:
            raise ValueError("stream header too long")
        return None, 0
    doc = json.loads(bytes(buffer[:end]))
    if not isinstance(doc, dict):
        raise ValueError("a stream header must be an object")
    return doc, end


def _parse_binary(buffer: bytes | bytearray) -> tuple[dict[str, Any] | None, int]:
    if len(buffer) < 2:
        return None, 0
    header: dict[str, Any] = {"t": KIND_TCP, "hops": buffer[1]}
    pos = 2
    for name in _FIELDS:
        if len(buffer) <= pos:
            return None, 0
        end = pos + 1 + buffer[pos]
        if len(buffer) < end:
            return None, 0
        header[name] = bytes(buffer[pos + 1 : end]).decode()  # ValueError if not UTF-8
        pos = end
    return header, pos


class HeaderReader:
    """Takes a new stream's first bytes (push mode) until its header is complete.

    Then the stream is detached (what followed the header waits in it, uncredited, for
    whoever attaches next) and ``on_header`` is told; a stream that ends, breaks the
    bound or sends a malformed header is told as None, once.
    """

    def __init__(self, stream: LinkStream, on_header: HeaderCallback) -> None:
        self._stream = stream
        self._on_header: HeaderCallback | None = on_header
        self._buffer = b""

    def stream_data(self, data: bytes) -> None:
        if self._on_header is None:
            return
        self._buffer = self._buffer + data if self._buffer else data
        try:
            header, size = parse(self._buffer)
        except ValueError:
            self._told(None, b"")
            return
        if header is not None:
            rest = self._buffer[size:]
            self._stream.consume(size)
            self._buffer = b""
            self._stream.detach(rest)
            self._told(header, rest)

    def stream_eof(self) -> None:
        self._told(None, b"")

    def stream_reset(self, reason: str) -> None:
        self._told(None, b"")

    def stream_writable(self) -> None:
        pass

    def _told(self, header: dict[str, Any] | None, rest: bytes) -> None:
        callback, self._on_header = self._on_header, None
        if callback is not None:
            callback(self._stream, header, rest)
