"""Stream headers: both encodings parse to the same fields, however the bytes arrive."""

from __future__ import annotations

from typing import Any

import pytest

from skupper.router.stream_header import (
    BINARY_MAGIC,
    MAX_HEADER_BYTES,
    HeaderReader,
    encode_line,
    encode_tcp,
    parse,
)

ORIGIN = {"src": "11111111-1111-4111-8111-111111111111", "client": "127.0.0.1:40000"}
DST = "22222222-2222-4222-8222-222222222222"
EXPECTED = {"t": "tcp", "key": "backend", "dst": DST, "hops": 15, **ORIGIN}


@pytest.mark.parametrize("binary", [True, False])
def test_a_connection_header_reads_back_as_it_was_written(binary: bool) -> None:
    wire = encode_tcp("backend", DST, 15, ORIGIN, binary=binary)
    assert (wire[0] == BINARY_MAGIC) is binary
    header, size = parse(wire + b"payload")
    assert header == EXPECTED
    assert size == len(wire)


def test_the_binary_header_is_smaller_than_the_json_line() -> None:
    assert len(encode_tcp("backend", DST, 15, ORIGIN, binary=True)) < \
        len(encode_tcp("backend", DST, 15, ORIGIN, binary=False))


def test_fields_too_long_for_the_binary_header_fall_back_to_json() -> None:
    wire = encode_tcp("k" * 300, DST, 15, ORIGIN, binary=True)
    assert wire.startswith(b"{")
    assert parse(wire)[0]["key"] == "k" * 300  # type: ignore[index]


@pytest.mark.parametrize("binary", [True, False])
def test_an_incomplete_header_waits_for_more(binary: bool) -> None:
    wire = encode_tcp("backend", DST, 15, ORIGIN, binary=binary)
    for cut in range(len(wire)):
        assert parse(wire[:cut]) == (None, 0)


@pytest.mark.parametrize("bad", [b"[1]\n", b"{nope\n", b"x" * MAX_HEADER_BYTES,
                                 bytes([BINARY_MAGIC, 1, 2]) + b"\xff\xfe" + b"\0" * 10])
def test_malformed_or_unbounded_headers_are_refused(bad: bytes) -> None:
    with pytest.raises(ValueError):
        parse(bad)


def test_the_control_header_is_a_json_line() -> None:
    assert parse(encode_line({"t": "ctl"})) == ({"t": "ctl"}, len(b'{"t":"ctl"}\n'))


class _Stream:
    """What HeaderReader uses of a LinkStream: consume and detach."""

    def __init__(self) -> None:
        self.consumed = 0
        self.detached: bytes | None = None

    def consume(self, count: int) -> None:
        self.consumed += count

    def detach(self, held: bytes) -> None:
        self.detached = held


@pytest.mark.parametrize("binary", [True, False])
def test_the_reader_takes_a_header_split_byte_by_byte_and_keeps_what_follows(
        binary: bool) -> None:
    wire = encode_tcp("backend", DST, 15, ORIGIN, binary=binary) + b"first bytes"
    told: list[tuple[Any, bytes]] = []
    stream = _Stream()
    reader = HeaderReader(stream, lambda _s, header, rest: told.append((header, rest)))  # type: ignore[arg-type]
    for i in range(len(wire)):
        reader.stream_data(wire[i : i + 1])
        if told:
            break
    assert told == [(EXPECTED, b"")]  # told as soon as the header is whole
    assert stream.consumed == len(wire) - len(b"first bytes")  # the header's bytes only
    assert stream.detached == b""


def test_a_stream_that_ends_before_its_header_is_told_none_once() -> None:
    told: list[Any] = []
    reader = HeaderReader(_Stream(), lambda _s, header, rest: told.append(header))  # type: ignore[arg-type]
    reader.stream_data(b'{"t": "tc')
    reader.stream_eof()
    reader.stream_reset("gone")
    assert told == [None]
