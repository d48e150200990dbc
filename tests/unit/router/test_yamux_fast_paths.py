"""The session's fast paths (one whole data frame in, one data frame out) do exactly what
the general paths do, or decline and change nothing.

Each case builds a session in some state, copies it, and hands the same bytes to the
fast path of one copy and to the general path of the other: a fast path that answers
must leave both copies alike and report what the general path reports; one that
declines must leave its copy as it was (the link then takes the general path).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest

from skupper.router.protocol.frames import Flag, FrameType, encode_header
from skupper.router.protocol.session import (
    INITIAL_STREAM_WINDOW,
    MAX_SEND_FRAME,
    DataReceived,
    Session,
    StreamClosedError,
    StreamOpened,
)

DATA, WU = FrameType.DATA, FrameType.WINDOW_UPDATE


def data_frame(stream_id: int, payload: bytes, flags: Flag = Flag.NONE) -> bytes:
    return encode_header(DATA, flags, stream_id, len(payload)) + payload


def connected() -> tuple[Session, Session, int]:
    """A client and server with client stream 1 opened and accepted."""
    client, server = Session(is_client=True), Session(is_client=False)
    sid = client.open_stream()
    assert server.receive_data(client.data_to_send()) == [StreamOpened(sid)]
    client.receive_data(server.data_to_send())
    return client, server, sid


def state_of(session: Session) -> object:
    """Everything a session holds, for comparing two copies."""
    streams = {sid: (s.state, s.recv_window, s.send_window, s.unconsumed, s.pending_credit,
                     s.awaiting_ack)
               for sid, s in session._streams.items()}
    return (streams, session._parser.buffered, session.terminated, list(session._recent.items()),
            session.data_to_send())


# -- receiving --------------------------------------------------------------------------

def _server_open() -> tuple[Session, int]:
    _, server, sid = connected()
    return server, sid


def _server_locally_closed() -> tuple[Session, int]:
    server, sid = _server_open()
    server.close_stream(sid)  # we sent FIN; the peer may still send
    server.data_to_send()
    return server, sid


def _server_remotely_closed() -> tuple[Session, int]:
    client, server, sid = connected()
    client.close_stream(sid)
    server.receive_data(client.data_to_send())
    return server, sid


def _client_before_ack() -> tuple[Session, int]:
    client = Session(is_client=True)
    sid = client.open_stream()
    client.data_to_send()
    return client, sid


def _server_half_frame_held() -> tuple[Session, int]:
    server, sid = _server_open()
    server.receive_data(data_frame(sid, b"held")[:7])  # part of a header waits
    return server, sid


def _server_window_used() -> tuple[Session, int]:
    server, sid = _server_open()
    server.receive_data(data_frame(sid, bytes(INITIAL_STREAM_WINDOW)))
    return server, sid


Setup = Callable[[], tuple[Session, int]]

# (case, set-up, the read's bytes from the stream id, does the fast path take it)
RECEIVE_CASES: list[tuple[str, Setup, Callable[[int], bytes], bool]] = [
    ("one data frame", _server_open, lambda sid: data_frame(sid, b"r" * 64), True),
    ("one large data frame", _server_open, lambda sid: data_frame(sid, b"x" * 200_000), True),
    ("data after our FIN", _server_locally_closed, lambda sid: data_frame(sid, b"late"), True),
    ("two frames in one read", _server_open,
     lambda sid: data_frame(sid, b"a") + data_frame(sid, b"b"), False),
    ("data with FIN", _server_open, lambda sid: data_frame(sid, b"bye", Flag.FIN), False),
    ("data with RST", _server_open, lambda sid: data_frame(sid, b"x", Flag.RST), False),
    ("empty data frame", _server_open, lambda sid: data_frame(sid, b""), False),
    ("a window update", _server_open, lambda sid: encode_header(WU, Flag.NONE, sid, 10), False),
    ("an unknown stream", _server_open, lambda sid: data_frame(sid + 2, b"who"), False),
    ("a stream never opened by us", _server_open, lambda sid: data_frame(sid + 1, b"x"), False),
    ("data after the peer's FIN", _server_remotely_closed, lambda sid: data_frame(sid, b"x"),
     False),
    ("data before the ACK", _client_before_ack, lambda sid: data_frame(sid, b"early"), False),
    ("data beyond the window", _server_window_used, lambda sid: data_frame(sid, b"more"),
     False),
    ("a frame completing a held one", _server_half_frame_held,
     lambda sid: data_frame(sid, b"held")[7:], False),
    ("a header promising more than came", _server_open,
     lambda sid: data_frame(sid, b"x" * 100)[:50], False),
    ("a bad version", _server_open, lambda sid: b"\x01" + data_frame(sid, b"v")[1:], False),
    ("unknown flags", _server_open,
     lambda sid: encode_header(DATA, Flag.NONE, sid, 1)[:2] + b"\x00\x40"
     + encode_header(DATA, Flag.NONE, sid, 1)[4:] + b"f", False),
]


@pytest.mark.parametrize("as_view", [False, True], ids=["bytes", "memoryview"])
@pytest.mark.parametrize(("case", "setup", "wire", "taken"), RECEIVE_CASES,
                         ids=[c[0] for c in RECEIVE_CASES])
def test_one_data_frame_in_matches_receive_data_or_changes_nothing(
        case: str, setup: Setup, wire: Callable[[int], bytes], taken: bool,
        as_view: bool) -> None:
    session, sid = setup()
    general = copy.deepcopy(session)
    untouched = copy.deepcopy(session)
    read = wire(sid)
    fast = session.receive_one_data_frame(memoryview(bytearray(read)) if as_view else read)
    events = general.receive_data(read)
    if not taken:
        assert fast is None, case
        assert state_of(session) == state_of(untouched), case
        return
    assert fast is not None, case
    assert type(fast[1]) is bytes  # a copy: the read buffer is reused for the next read
    assert [DataReceived(*fast)] == events, case
    assert state_of(session) == state_of(general), case


def test_fast_path_payload_outlives_the_read_buffer() -> None:
    _, server, sid = connected()
    buffer = bytearray(data_frame(sid, b"kept"))
    fast = server.receive_one_data_frame(memoryview(buffer))
    buffer[:] = bytes(len(buffer))  # the transport's next read overwrites it
    assert fast == (sid, b"kept")


def test_consuming_fast_path_data_credits_the_window_as_usual() -> None:
    client, server, sid = connected()
    frames_per_credit = INITIAL_STREAM_WINDOW // 2 // MAX_SEND_FRAME  # credit at half
    for sent in range(1, 3 * INITIAL_STREAM_WINDOW // MAX_SEND_FRAME + 1):  # three windows
        frame = client.data_frame(sid, b"w" * MAX_SEND_FRAME)
        assert frame is not None
        got = server.receive_one_data_frame(frame)
        assert got is not None
        server.consumed(sid, len(got[1]))
        client.receive_data(server.data_to_send())
        if sent % frames_per_credit == 0:  # every byte so far was credited back
            assert client.send_window(sid) == INITIAL_STREAM_WINDOW


# -- sending ------------------------------------------------------------------------------

def _client_open() -> tuple[Session, int]:
    client, _, sid = connected()
    return client, sid


def _client_with_queued_frame() -> tuple[Session, int]:
    client, sid = _client_open()
    client.ping(7)  # queued, not yet taken
    return client, sid


def _client_closed() -> tuple[Session, int]:
    client, sid = _client_open()
    client.close_stream(sid)
    client.data_to_send()
    return client, sid


def _client_small_window() -> tuple[Session, int]:
    client, sid = _client_open()
    client.send(sid, bytes(INITIAL_STREAM_WINDOW - 10))
    client.data_to_send()
    return client, sid


SEND_CASES: list[tuple[str, Setup, bytes, bool]] = [
    ("a small write", _client_open, b"q" * 64, True),
    ("a write of one whole frame", _client_open, bytes(MAX_SEND_FRAME), True),
    ("early data before the ACK", _client_before_ack, b"early", True),
    ("a write over one frame", _client_open, bytes(MAX_SEND_FRAME + 1), False),
    ("a write over the window", _client_small_window, bytes(11), False),
    ("a write behind a queued frame", _client_with_queued_frame, b"after", False),
    ("an empty write", _client_open, b"", False),
]


@pytest.mark.parametrize(("case", "setup", "payload", "taken"), SEND_CASES,
                         ids=[c[0] for c in SEND_CASES])
def test_one_data_frame_out_matches_send_or_changes_nothing(
        case: str, setup: Setup, payload: bytes, taken: bool) -> None:
    session, sid = setup()
    general = copy.deepcopy(session)
    untouched = copy.deepcopy(session)
    frame = session.data_frame(sid, payload)
    if not taken:
        assert frame is None, case
        assert state_of(session) == state_of(untouched), case
        return
    assert general.send(sid, payload) == len(payload)
    assert frame == general.data_to_send(), case
    assert state_of(session) == state_of(general), case


def test_no_fast_write_on_a_closed_stream_and_send_still_refuses_it() -> None:
    session, sid = _client_closed()
    assert session.data_frame(sid, b"late") is None
    with pytest.raises(StreamClosedError):
        session.send(sid, b"late")
