"""Yamux framing: exact header bytes for every type and flag, and the incremental parser."""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import skupper.router.protocol as protocol
from skupper.router.protocol.frames import (
    HEADER,
    HEADER_SIZE,
    MAX_DATA_PAYLOAD,
    VERSION,
    Flag,
    Frame,
    FrameParser,
    FrameType,
    GoAwayCode,
    ProtocolError,
    encode_header,
)


def _hex(text: str) -> bytes:
    return bytes.fromhex(text)


def _parse(data: bytes, parser: FrameParser | None = None) -> list[Frame]:
    return list((parser or FrameParser()).feed(data))


def test_constants_match_the_spec() -> None:
    assert [int(t) for t in FrameType] == [0, 1, 2, 3]
    assert [int(f) for f in (Flag.SYN, Flag.ACK, Flag.FIN, Flag.RST)] == [1, 2, 4, 8]
    assert [int(c) for c in GoAwayCode] == [0, 1, 2]
    assert HEADER_SIZE == 12


@pytest.mark.parametrize(
    ("frame_type", "flags", "stream_id", "length", "expected"),
    [
        (FrameType.DATA, Flag.NONE, 1, 5, "00 00 0000 00000001 00000005"),
        (FrameType.DATA, Flag.SYN, 3, 0, "00 00 0001 00000003 00000000"),
        (FrameType.DATA, Flag.ACK, 2, 7, "00 00 0002 00000002 00000007"),
        (FrameType.DATA, Flag.FIN, 0xDEADBEEF, 1, "00 00 0004 deadbeef 00000001"),
        (FrameType.DATA, Flag.RST, 4, 0, "00 00 0008 00000004 00000000"),
        (FrameType.WINDOW_UPDATE, Flag.SYN, 1, 0, "00 01 0001 00000001 00000000"),
        (FrameType.WINDOW_UPDATE, Flag.ACK, 1, 0x40000, "00 01 0002 00000001 00040000"),
        (FrameType.WINDOW_UPDATE, Flag.FIN, 2, 0, "00 01 0004 00000002 00000000"),
        (FrameType.WINDOW_UPDATE, Flag.RST, 2, 0, "00 01 0008 00000002 00000000"),
        (FrameType.WINDOW_UPDATE, Flag.NONE, 5, 0x20000, "00 01 0000 00000005 00020000"),
        (FrameType.WINDOW_UPDATE, Flag.ACK | Flag.FIN, 6, 0, "00 01 0006 00000006 00000000"),
        (FrameType.PING, Flag.SYN, 0, 0x01020304, "00 02 0001 00000000 01020304"),
        (FrameType.PING, Flag.ACK, 0, 0xFFFFFFFF, "00 02 0002 00000000 ffffffff"),
        (FrameType.GO_AWAY, Flag.NONE, 0, 0, "00 03 0000 00000000 00000000"),
        (FrameType.GO_AWAY, Flag.NONE, 0, 1, "00 03 0000 00000000 00000001"),
        (FrameType.GO_AWAY, Flag.NONE, 0, 2, "00 03 0000 00000000 00000002"),
    ],
)
def test_encode_header_exact_bytes(
    frame_type: FrameType, flags: Flag, stream_id: int, length: int, expected: str
) -> None:
    header = encode_header(frame_type, flags, stream_id, length)
    assert header == _hex(expected)
    # Header-only frames round-trip through the parser; data frames need their payload.
    payload = b"x" * length if frame_type == FrameType.DATA else b""
    frame = Frame(frame_type, flags, stream_id, length, payload)
    assert frame.encode() == header + payload
    assert _parse(header + payload) == [frame]


def test_data_frame_carries_payload_and_others_do_not() -> None:
    data = _hex("00 00 0000 00000001 00000003 616263")
    window = _hex("00 01 0000 00000001 00000003")
    frames = _parse(data + window + b"trailing")
    assert frames == [
        Frame(FrameType.DATA, Flag.NONE, 1, 3, b"abc"),
        Frame(FrameType.WINDOW_UPDATE, Flag.NONE, 1, 3, b""),
    ]
    assert isinstance(frames[0].type, FrameType)
    assert isinstance(frames[0].flags, Flag)


def _sample_stream() -> tuple[bytes, list[Frame]]:
    frames = [
        Frame(FrameType.WINDOW_UPDATE, Flag.SYN, 1, 0),
        Frame(FrameType.DATA, Flag.NONE, 1, 5, b"hello"),
        Frame(FrameType.DATA, Flag.FIN, 1, 0, b""),
        Frame(FrameType.PING, Flag.SYN, 0, 42),
        Frame(FrameType.DATA, Flag.ACK, 2, 3, b"\x00\x01\x02"),
        Frame(FrameType.GO_AWAY, Flag.NONE, 0, 0),
    ]
    return b"".join(f.encode() for f in frames), frames


def test_parser_handles_a_split_at_every_offset() -> None:
    wire, frames = _sample_stream()
    for cut in range(len(wire) + 1):
        parser = FrameParser()
        got = _parse(wire[:cut], parser) + _parse(wire[cut:], parser)
        assert got == frames, cut
        assert parser.buffered == 0


def test_parser_handles_two_splits_at_every_offset_pair() -> None:
    wire, frames = _sample_stream()
    for a in range(len(wire) + 1):
        for b in range(a, len(wire) + 1):
            parser = FrameParser()
            got = [*parser.feed(wire[:a]), *parser.feed(wire[a:b]), *parser.feed(wire[b:])]
            assert got == frames, (a, b)


def test_parser_one_byte_at_a_time_and_partial_buffering() -> None:
    wire, frames = _sample_stream()
    parser = FrameParser()
    got: list[Frame] = []
    for i in range(len(wire)):
        got += parser.feed(wire[i : i + 1])
    assert got == frames
    assert _parse(wire[:11], parser) == []
    assert parser.buffered == 11


def test_parser_resumes_after_the_iterator_is_abandoned() -> None:
    wire, frames = _sample_stream()
    parser = FrameParser()
    it = parser.feed(wire)
    first = next(it)
    del it
    assert [first, *parser.feed(b"")] == frames


_frames = st.builds(
    lambda t, f, sid, n, payload: Frame(
        t,
        f,
        sid,
        len(payload) if t == FrameType.DATA else n,
        payload if t == FrameType.DATA else b"",
    ),
    st.sampled_from(FrameType),
    st.sampled_from([Flag(i) for i in range(16)]),
    st.integers(0, 0xFFFFFFFF),
    st.integers(0, 0xFFFFFFFF),
    st.binary(max_size=64),
)


@settings(max_examples=50, deadline=None)
@given(frames=st.lists(_frames, max_size=12), cuts=st.lists(st.integers(0, 2000), max_size=8))
def test_parser_round_trips_any_frames_in_any_chunking(
    frames: list[Frame], cuts: list[int]
) -> None:
    wire = b"".join(f.encode() for f in frames)
    bounds = [0, *sorted(c % (len(wire) + 1) for c in cuts), len(wire)]
    parser = FrameParser()
    got: list[Frame] = []
    for start, end in itertools.pairwise(bounds):
        got += parser.feed(wire[start:end])
    assert got == frames


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("01 00 0000 00000001 00000000", "version 1"),
        ("ff 02 0001 00000000 00000000", "version 255"),
        ("00 04 0000 00000001 00000000", "frame type 0x4"),
        ("00 ff 0000 00000001 00000000", "frame type 0xff"),
        ("00 00 0010 00000001 00000000", "flags 0x0010"),
        ("00 01 8000 00000001 00000000", "flags 0x8000"),
    ],
)
def test_parser_rejects_bad_version_type_and_flags(header: str, message: str) -> None:
    with pytest.raises(ProtocolError, match=message) as info:
        _parse(_hex(header))
    assert info.value.code == GoAwayCode.PROTOCOL_ERROR


def test_parser_enforces_the_data_payload_limit_before_buffering() -> None:
    parser = FrameParser(max_payload=100)
    assert _parse(encode_header(FrameType.DATA, Flag.NONE, 1, 100) + b"x" * 100, parser)
    with pytest.raises(ProtocolError, match="exceeds limit 100"):
        # Only the header has arrived: the oversize frame is refused without waiting.
        _parse(encode_header(FrameType.DATA, Flag.NONE, 1, 101), parser)
    # Window updates reuse the length field for a delta, which is not a payload size.
    assert _parse(encode_header(FrameType.WINDOW_UPDATE, Flag.NONE, 1, 10_000))
    assert FrameParser().max_payload == MAX_DATA_PAYLOAD
    with pytest.raises(ValueError):
        FrameParser(max_payload=MAX_DATA_PAYLOAD + 1)


def test_parser_stays_broken_after_an_error() -> None:
    parser = FrameParser()
    good = encode_header(FrameType.PING, Flag.SYN, 0, 1)
    it = parser.feed(good + _hex("07 00 0000 00000001 00000000"))
    assert next(it) == Frame(FrameType.PING, Flag.SYN, 0, 1)
    with pytest.raises(ProtocolError):
        next(it)
    with pytest.raises(ProtocolError):
        _parse(good, parser)


def test_protocol_package_does_no_io() -> None:
    forbidden = {"asyncio", "ssl", "socket", "threading", "time", "selectors"}
    package_dir = Path(protocol.__file__).parent
    for path in package_dir.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                names = {(node.module or "").split(".")[0]}
            else:
                continue
            assert not names & forbidden, (path.name, names)


def test_a_reused_read_buffer_yields_the_same_frames_as_bytes_however_it_is_split() -> None:
    # The link hands the parser a memoryview of one read buffer it reuses: payloads must
    # be copied out, and a frame split across reads must still parse whole.
    import random

    rng = random.Random(14)
    frames = []
    for i in range(200):
        if i % 3:
            payload = rng.randbytes(rng.choice([0, 1, 100, 5000, 70000]))
            frames.append(HEADER.pack(VERSION, 0, 0, 1 + 2 * i, len(payload)) + payload)
        else:
            frames.append(HEADER.pack(VERSION, 2, 1, 0, i))  # a ping
    wire = b"".join(frames)

    def parse(reused: bool) -> list[tuple[int, int, int, int, bytes]]:
        parser, out, pos = FrameParser(), [], 0
        buffer = bytearray(200_000)
        while pos < len(wire):
            chunk = wire[pos : pos + rng.choice([1, 11, 12, 13, 4096, 65536, 200_000])]
            pos += len(chunk)
            if reused:
                buffer[: len(chunk)] = chunk
                data: bytes | memoryview = memoryview(buffer)[: len(chunk)]
            else:
                data = chunk
            out += [(f.type, f.flags, f.stream_id, f.length, bytes(f.payload))
                    for f in parser.feed(data)]
            buffer[: len(chunk)] = bytes(len(chunk))  # the next read overwrites it
        return out

    expected = parse(reused=False)
    assert len(expected) == 200
    for _ in range(5):
        assert parse(reused=True) == expected
