"""Yamux sessions: handshake, data, flow control, close/reset, ping, go away, violations."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skupper.router.protocol.frames import Flag, FrameType, encode_header
from skupper.router.protocol.session import (
    INITIAL_STREAM_WINDOW,
    MAX_SEND_FRAME,
    RECENTLY_CLOSED_LIMIT,
    TRANSITIONS,
    ConnectionTerminated,
    DataReceived,
    Event,
    GoAwayReceived,
    PingAcknowledged,
    PingReceived,
    Session,
    SessionClosedError,
    StreamAccepted,
    StreamClosed,
    StreamClosedError,
    StreamEnded,
    StreamOpened,
    StreamReset,
    StreamState,
    TooManyStreamsError,
    WindowUpdated,
)

WU, DATA = FrameType.WINDOW_UPDATE, FrameType.DATA
GO_AWAY_PROTOCOL_ERROR = bytes.fromhex("00 03 0000 00000000 00000001")


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def pump(src: Session, dst: Session) -> list[Event]:
    return dst.receive_data(src.data_to_send())


def connected() -> tuple[Session, Session, int]:
    """A client and server with client stream 1 opened and accepted."""
    client, server = Session(is_client=True), Session(is_client=False)
    sid = client.open_stream()
    assert pump(client, server) == [StreamOpened(sid)]
    assert pump(server, client) == [StreamAccepted(sid)]
    return client, server, sid


def assert_terminated(session: Session, events: list[Event], reason: str) -> None:
    assert len(events) >= 1
    last = events[-1]
    assert isinstance(last, ConnectionTerminated), events
    assert last.code == 1
    assert reason in last.reason
    assert session.data_to_send().endswith(GO_AWAY_PROTOCOL_ERROR)
    assert session.terminated
    # A dead session ignores everything afterwards.
    assert session.receive_data(encode_header(FrameType.PING, Flag.SYN, 0, 1)) == []
    assert session.data_to_send() == b""


def test_stream_ids_have_the_right_parity() -> None:
    client, server = Session(is_client=True), Session(is_client=False)
    assert [client.open_stream() for _ in range(3)] == [1, 3, 5]
    assert [server.open_stream() for _ in range(3)] == [2, 4, 6]


def test_syn_ack_handshake_exact_bytes() -> None:
    client, server = Session(is_client=True), Session(is_client=False)
    sid = client.open_stream()
    assert client.stream_state(sid) == StreamState.SYN_SENT
    syn = client.data_to_send()
    assert syn == h("00 01 0001 00000001 00000000")
    assert server.receive_data(syn) == [StreamOpened(1)]
    assert server.stream_state(1) == StreamState.ESTABLISHED
    ack = server.data_to_send()
    assert ack == h("00 01 0002 00000001 00000000")
    assert client.receive_data(ack) == [StreamAccepted(1)]
    assert client.stream_state(1) == StreamState.ESTABLISHED
    assert client.open_stream_ids == server.open_stream_ids == frozenset({1})


def test_server_opened_stream_and_ack_on_a_data_frame() -> None:
    client, server = Session(is_client=True), Session(is_client=False)
    assert server.open_stream() == 2
    assert pump(server, client) == [StreamOpened(2)]
    client.data_to_send()  # drop the client's own ACK; answer with ACK on data instead
    events = server.receive_data(h("00 00 0002 00000002 00000002 6869"))
    assert events == [StreamAccepted(2), DataReceived(2, b"hi")]


def test_larger_initial_window_is_advertised_in_syn_and_ack() -> None:
    big = INITIAL_STREAM_WINDOW * 4
    client, server = Session(True, initial_window=big), Session(False, initial_window=big)
    client.open_stream()
    syn = client.data_to_send()
    assert syn == h("00 01 0001 00000001 000c0000")
    assert server.receive_data(syn) == [StreamOpened(1), WindowUpdated(1, big)]
    assert server.data_to_send() == h("00 01 0002 00000001 000c0000")
    with pytest.raises(ValueError):
        Session(True, initial_window=INITIAL_STREAM_WINDOW - 1)


def test_data_flows_both_ways_with_exact_bytes() -> None:
    client, server, sid = connected()
    assert client.send(sid, b"hello") == 5
    wire = client.data_to_send()
    assert wire == h("00 00 0000 00000001 00000005") + b"hello"
    assert server.receive_data(wire) == [DataReceived(sid, b"hello")]
    assert server.send(sid, bytearray(b"world!")) == 6
    assert pump(server, client) == [DataReceived(sid, b"world!")]
    assert client.send(sid, b"") == 0
    assert client.data_to_send() == b""


def test_send_splits_into_frames_of_the_named_maximum() -> None:
    client, server, sid = connected()
    payload = random.Random(1).randbytes(MAX_SEND_FRAME * 2 + 10)
    assert client.send(sid, memoryview(payload)) == len(payload)
    wire = client.data_to_send()
    assert len(wire) == len(payload) + 3 * 12
    assert wire[:12] == encode_header(DATA, Flag.NONE, sid, MAX_SEND_FRAME)
    events = server.receive_data(wire)
    assert [len(e.data) for e in events if isinstance(e, DataReceived)] == [
        MAX_SEND_FRAME,
        MAX_SEND_FRAME,
        10,
    ]
    assert b"".join(e.data for e in events if isinstance(e, DataReceived)) == payload


def test_send_stops_at_the_window_and_a_window_update_reopens_it() -> None:
    client, _server, sid = connected()
    assert client.send_window(sid) == INITIAL_STREAM_WINDOW
    assert client.send(sid, b"x" * (INITIAL_STREAM_WINDOW + 100)) == INITIAL_STREAM_WINDOW
    assert client.send_window(sid) == 0
    assert client.send(sid, b"more") == 0
    events = client.receive_data(h("00 01 0000 00000001 00000003"))
    assert events == [WindowUpdated(sid, 3)]
    assert client.send(sid, b"more") == 3
    assert client.send_window(sid) == 0


def test_consumed_sends_a_window_update_only_past_half_the_window() -> None:
    client, server, sid = connected()
    half = INITIAL_STREAM_WINDOW // 2
    client.send(sid, b"z" * (half + 1000))
    pump(client, server)
    server.consumed(sid, half - 1)
    assert server.data_to_send() == b""
    server.consumed(sid, 1)
    update = server.data_to_send()
    assert update == h("00 01 0000 00000001 00020000")
    assert client.receive_data(update) == [WindowUpdated(sid, half - 1000 + half)]
    server.consumed(sid, 1000)
    assert server.data_to_send() == b""
    with pytest.raises(ValueError):
        server.consumed(sid, 1)  # nothing left unconsumed
    with pytest.raises(ValueError):
        server.consumed(sid, -1)
    server.consumed(99, 5)  # unknown streams are ignored: they may just have been freed


def test_full_window_cycles_many_times_without_stalling() -> None:
    client, server, sid = connected()
    total = received = 0
    for _ in range(10):
        total += client.send(sid, b"q" * INITIAL_STREAM_WINDOW)
        for event in pump(client, server):
            assert isinstance(event, DataReceived)
            received += len(event.data)
            server.consumed(sid, len(event.data))
        pump(server, client)
    assert total == received == 10 * INITIAL_STREAM_WINDOW


def test_data_beyond_the_window_is_a_protocol_error() -> None:
    client, server, sid = connected()
    client.send(sid, b"a" * INITIAL_STREAM_WINDOW)
    assert len(pump(client, server)) == INITIAL_STREAM_WINDOW // MAX_SEND_FRAME
    events = server.receive_data(h("00 00 0000 00000001 00000001 62"))
    assert_terminated(server, events, "exceeds window")
    with pytest.raises(SessionClosedError):
        server.send(sid, b"x")
    with pytest.raises(SessionClosedError):
        server.open_stream()


def test_single_frame_larger_than_the_window_is_a_protocol_error() -> None:
    _, server, _ = connected()
    events = server.receive_data(encode_header(DATA, Flag.NONE, 1, INITIAL_STREAM_WINDOW + 1))
    assert_terminated(server, events, "exceeds limit")


def test_fin_half_closes_each_direction_then_both_close() -> None:
    client, server, sid = connected()
    assert client.close_stream(sid) is False
    assert client.stream_state(sid) == StreamState.LOCAL_CLOSED
    fin = client.data_to_send()
    assert fin == h("00 01 0004 00000001 00000000")
    assert server.receive_data(fin) == [StreamEnded(sid)]
    assert server.stream_state(sid) == StreamState.REMOTE_CLOSED
    with pytest.raises(StreamClosedError):
        client.send(sid, b"late")
    with pytest.raises(StreamClosedError):
        client.close_stream(sid)
    # The other direction still works.
    assert server.send(sid, b"reply") == 5
    assert pump(server, client) == [DataReceived(sid, b"reply")]
    assert server.close_stream(sid) is True  # the peer had finished: freed now
    assert server.stream_state(sid) == StreamState.CLOSED
    assert server.open_stream_ids == frozenset()
    assert pump(server, client) == [StreamEnded(sid), StreamClosed(sid)]
    assert client.stream_state(sid) == StreamState.CLOSED
    assert client.open_stream_ids == frozenset()


def test_fin_on_a_data_frame_delivers_data_first() -> None:
    _client, server, sid = connected()
    server.close_stream(sid)
    server.data_to_send()
    events = server.receive_data(h("00 00 0004 00000001 00000002 6f6b"))
    assert events == [DataReceived(sid, b"ok"), StreamEnded(sid), StreamClosed(sid)]


def test_close_before_the_ack_arrives() -> None:
    client, server = Session(True), Session(False)
    sid = client.open_stream()
    client.send(sid, b"request")
    client.close_stream(sid)
    assert pump(client, server) == [
        StreamOpened(sid),
        DataReceived(sid, b"request"),
        StreamEnded(sid),
    ]
    server.send(sid, b"response")
    server.close_stream(sid)
    events = pump(server, client)
    assert events == [
        StreamAccepted(sid),
        DataReceived(sid, b"response"),
        StreamEnded(sid),
        StreamClosed(sid),
    ]


def test_local_reset_sends_rst_and_frames_in_flight_are_ignored() -> None:
    client, server, sid = connected()
    server.send(sid, b"in flight")
    client.reset_stream(sid)
    assert client.stream_state(sid) == StreamState.RESET
    rst = client.data_to_send()
    assert rst == h("00 01 0008 00000001 00000000")
    assert pump(server, client) == []  # data sent before the peer saw our RST
    assert client.receive_data(h("00 01 0000 00000001 00000010")) == []
    assert not client.terminated
    assert server.receive_data(rst) == [StreamReset(sid), StreamClosed(sid)]
    assert server.stream_state(sid) == StreamState.RESET
    with pytest.raises(StreamClosedError):
        server.send(sid, b"x")
    with pytest.raises(StreamClosedError):
        client.send(sid, b"x")
    client.reset_stream(sid)  # idempotent
    assert client.data_to_send() == b""


def test_peer_reset_of_our_unacknowledged_stream() -> None:
    client = Session(True)
    sid = client.open_stream()
    assert client.receive_data(h("00 00 0008 00000001 00000000")) == [
        StreamReset(sid),
        StreamClosed(sid),
    ]
    assert client.open_stream_ids == frozenset()


def test_ping_round_trip() -> None:
    client, server = Session(True), Session(False)
    client.ping(0x01020304)
    ping = client.data_to_send()
    assert ping == h("00 02 0001 00000000 01020304")
    assert server.receive_data(ping) == [PingReceived(0x01020304)]
    pong = server.data_to_send()
    assert pong == h("00 02 0002 00000000 01020304")
    assert client.receive_data(pong) == [PingAcknowledged(0x01020304)]
    with pytest.raises(ValueError):
        client.ping(1 << 32)


def test_go_away_refuses_new_streams_both_ways() -> None:
    client, server, sid = connected()
    server.go_away()
    assert server.data_to_send() == h("00 03 0000 00000000 00000000")
    server.go_away()
    assert server.data_to_send() == b""  # sent once
    assert client.receive_data(h("00 03 0000 00000000 00000000")) == [GoAwayReceived(0)]
    with pytest.raises(SessionClosedError):
        client.open_stream()
    with pytest.raises(SessionClosedError):
        server.open_stream()
    # Existing streams keep working.
    client.send(sid, b"still here")
    assert pump(client, server) == [DataReceived(sid, b"still here")]
    # A SYN that crossed our Go Away is refused with RST, not a session error.
    assert server.receive_data(h("00 01 0001 00000003 00000000")) == []
    assert server.data_to_send() == h("00 01 0008 00000003 00000000")


def test_go_away_with_error_codes() -> None:
    client, server = Session(True), Session(False)
    client.go_away(2)
    assert client.data_to_send() == h("00 03 0000 00000000 00000002")
    assert client.terminated
    assert server.receive_data(h("00 03 0000 00000000 00000002")) == [GoAwayReceived(2)]
    assert server.receive_data(h("00 03 0000 00000000 00000001")) == [GoAwayReceived(1)]


def test_stream_limit_resets_extra_peer_streams_and_refuses_local_ones() -> None:
    client, server = Session(True), Session(False, max_streams=2)
    for _ in range(3):
        client.open_stream()
    assert pump(client, server) == [StreamOpened(1), StreamOpened(3)]
    assert server.data_to_send().endswith(h("00 01 0008 00000005 00000000"))
    with pytest.raises(TooManyStreamsError):
        server.open_stream()
    # Data the peer sends on the refused stream before seeing the RST is dropped.
    assert server.receive_data(h("00 00 0000 00000005 00000001 78")) == []
    assert not server.terminated


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        ("00 01 0001 00000001 00000000", "our id parity"),  # server-side SYN with odd id
        ("00 00 0000 00000007 00000000", "never opened"),
        ("00 01 0000 00000002 00000001", "never opened"),  # our parity, not yet opened
        ("00 01 0003 00000003 00000000", "SYN and ACK"),
        ("00 00 0000 00000000 00000000", "session stream 0"),
        ("00 02 0001 00000001 00000000", "not 0"),
        ("00 03 0000 00000001 00000000", "not 0"),
        ("00 02 0000 00000000 00000000", "ping with flags"),
        ("00 02 0003 00000000 00000000", "ping with flags"),
        ("00 03 0001 00000000 00000000", "go away with flags"),
        ("00 04 0000 00000000 00000000", "unknown frame type"),
        ("01 00 0000 00000001 00000000", "version"),
        ("00 00 0020 00000001 00000000", "unknown flags"),
    ],
)
def test_peer_protocol_violations_terminate_with_go_away(wire: str, reason: str) -> None:
    client = Session(True)
    assert_terminated(client, client.receive_data(h(wire)), reason)


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        ("00 01 0001 00000001 00000000", "reused"),  # duplicate SYN
        ("00 01 0002 00000001 00000000", "unexpected ACK"),
        ("00 01 0004 00000001 0000000000 00 0000 00000001 00000001 78", "RECV_DATA"),
        ("00 01 0004 00000001 0000000000 01 0004 00000001 00000000", "RECV_FIN"),
    ],
)
def test_stream_violations_on_an_open_stream(wire: str, reason: str) -> None:
    _, server, _ = connected()
    assert_terminated(server, server.receive_data(h(wire)), reason)


def test_peer_reusing_a_recently_closed_id_is_a_protocol_error() -> None:
    client, server, sid = connected()
    client.reset_stream(sid)
    pump(client, server)
    assert server.stream_state(sid) == StreamState.RESET
    assert_terminated(server, server.receive_data(h("00 01 0001 00000001 00000000")), "reused")


def test_peer_must_ack_before_sending_anything_else() -> None:
    client = Session(True)
    client.open_stream()
    client.data_to_send()
    assert_terminated(client, client.receive_data(h("00 00 0000 00000001 00000001 78")), "ACK")


def test_frames_for_long_forgotten_streams_are_ignored() -> None:
    client, server = Session(True), Session(False)
    first = 1
    for _ in range(RECENTLY_CLOSED_LIMIT + 5):
        sid = client.open_stream()
        pump(client, server)
        pump(server, client)
        client.reset_stream(sid)
        pump(client, server)
    assert client.stream_state(first) == StreamState.IDLE  # evicted from the bounded set
    assert server.receive_data(encode_header(WU, Flag.NONE, first, 9)) == []
    assert client.receive_data(encode_header(WU, Flag.NONE, first, 9)) == []
    assert not client.terminated and not server.terminated
    assert client.open_stream_ids == server.open_stream_ids == frozenset()


def test_transition_table_has_no_exits_from_terminal_states() -> None:
    assert not [key for key in TRANSITIONS if key[0] in (StreamState.CLOSED, StreamState.RESET)]
    assert {state for state, _ in TRANSITIONS} == set(StreamState) - {
        StreamState.CLOSED,
        StreamState.RESET,
    }


class _Endpoint:
    """A driver for one side of the property test: sends, consumes, closes."""

    def __init__(self, session: Session, outgoing: dict[int, bytes]) -> None:
        self.session = session
        self.outgoing = outgoing  # what this side must send on each stream id
        self.sent: dict[int, int | None] = {}  # bytes sent so far; None once closed
        self.received: dict[int, bytearray] = {}
        self.unconsumed: dict[int, int] = {}
        self.closed: set[int] = set()

    def handle(self, events: list[Event]) -> None:
        for event in events:
            assert not isinstance(event, (ConnectionTerminated, StreamReset)), event
            if isinstance(event, StreamOpened):
                self.sent[event.stream_id] = 0
            elif isinstance(event, DataReceived):
                self.received.setdefault(event.stream_id, bytearray()).extend(event.data)
                self.unconsumed[event.stream_id] = self.unconsumed.get(event.stream_id, 0) + len(
                    event.data
                )
            elif isinstance(event, StreamClosed):
                self.closed.add(event.stream_id)

    def write(self, rng: random.Random, everything: bool = False) -> None:
        for sid, done in list(self.sent.items()):
            if done is None or (not everything and rng.random() < 0.5):
                continue
            data = self.outgoing[sid]
            if done < len(data):
                size = len(data) if everything else rng.randint(1, 40_000)
                done += self.session.send(sid, data[done : done + size])
            if done == len(data):
                self.session.close_stream(sid)
                if self.session.stream_state(sid) == StreamState.CLOSED:
                    self.closed.add(sid)
                self.sent[sid] = None
            else:
                self.sent[sid] = done

    def consume(self, rng: random.Random, everything: bool = False) -> None:
        for sid, n in list(self.unconsumed.items()):
            take = n if everything else rng.randint(0, n)
            if take:
                self.session.consumed(sid, take)
                self.unconsumed[sid] = n - take


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), client_streams=st.integers(0, 100))
def test_two_sessions_carry_100_streams_intact(seed: int, client_streams: int) -> None:
    rng = random.Random(seed)
    client_ids = [1 + 2 * i for i in range(client_streams)]
    server_ids = [2 + 2 * i for i in range(100 - client_streams)]

    def payload() -> bytes:
        # Mostly small; a few streams outgrow a whole window so flow control must kick in.
        kind = rng.choices(["empty", "small", "large"], weights=[1, 20, 1])[0]
        size = {"empty": 0, "small": rng.randint(1, 3000), "large": 300_000}[kind]
        return rng.randbytes(size)

    to_server = {sid: payload() for sid in client_ids + server_ids}
    to_client = {sid: payload() for sid in client_ids + server_ids}
    client = _Endpoint(Session(True), to_server)
    server = _Endpoint(Session(False), to_client)
    for sid in client_ids:
        assert client.session.open_stream() == sid
        client.sent[sid] = 0
    for sid in server_ids:
        assert server.session.open_stream() == sid
        server.sent[sid] = 0
    wires = {id(client): bytearray(), id(server): bytearray()}  # bytes in flight to each

    def deliver(dst: _Endpoint, src: _Endpoint, everything: bool = False) -> None:
        wire = wires[id(dst)]
        wire += src.session.data_to_send()
        cut = len(wire) if everything else rng.randint(0, len(wire))
        chunk = bytes(wire[:cut])
        del wire[:cut]
        dst.handle(dst.session.receive_data(chunk))

    for _ in range(300):
        side, other = (client, server) if rng.random() < 0.5 else (server, client)
        action = rng.random()
        if action < 0.4:
            deliver(side, other)
        elif action < 0.7:
            side.write(rng)
        else:
            side.consume(rng)
    for _ in range(50):
        for side, other in ((client, server), (server, client)):
            side.write(rng, everything=True)
            side.consume(rng, everything=True)
            deliver(other, side, everything=True)
    all_ids = set(client_ids + server_ids)
    assert client.closed == server.closed == all_ids
    assert client.session.open_stream_ids == server.session.open_stream_ids == frozenset()
    for sid in all_ids:
        assert bytes(server.received.get(sid, b"")) == to_server[sid]
        assert bytes(client.received.get(sid, b"")) == to_client[sid]
