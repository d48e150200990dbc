"""The state machine of one yamux stream: its states, what can happen to it, and the
table of every legal (state, input) pair, which ``session.Session`` enforces."""

from __future__ import annotations

from enum import IntEnum, StrEnum


class StreamState(StrEnum):
    IDLE = "idle"
    SYN_SENT = "syn_sent"
    SYN_RECEIVED = "syn_received"
    ESTABLISHED = "established"
    LOCAL_CLOSED = "local_closed"  # we sent FIN; the peer may still send
    REMOTE_CLOSED = "remote_closed"  # the peer sent FIN; we may still send
    CLOSED = "closed"
    RESET = "reset"


# What can happen to a stream, from our side (SEND_*) or the peer's (RECV_*). An IntEnum,
# not a plain Enum: looking up (state, input) in TRANSITIONS hashes the input, and a
# plain Enum's __hash__ is a Python call on every frame sent or received.
Input = IntEnum(
    "Input",
    "SEND_SYN RECV_SYN SEND_ACK RECV_ACK SEND_DATA RECV_DATA "
    "SEND_WINDOW RECV_WINDOW SEND_FIN RECV_FIN SEND_RST RECV_RST",
)


S, I = StreamState, Input  # noqa: E741 - table shorthand only

# Every legal (state, input) pair. Anything missing is a protocol error from the peer
# or a StreamClosedError for a local call. CLOSED and RESET are terminal: the stream
# is freed and later frames for it are ignored via the recently-closed set.
TRANSITIONS: dict[tuple[StreamState, Input], StreamState] = {
    (S.IDLE, I.SEND_SYN): S.SYN_SENT,
    (S.IDLE, I.RECV_SYN): S.SYN_RECEIVED,
    # Until the ACK arrives only ACK and RST may come from the peer (see _on_stream).
    (S.SYN_SENT, I.RECV_ACK): S.ESTABLISHED,
    (S.SYN_SENT, I.SEND_DATA): S.SYN_SENT,  # the spec's initial window allows early data
    (S.SYN_SENT, I.SEND_FIN): S.LOCAL_CLOSED,
    # We ACK a peer's SYN straight away, so this state lasts one frame.
    (S.SYN_RECEIVED, I.SEND_ACK): S.ESTABLISHED,
    (S.ESTABLISHED, I.SEND_DATA): S.ESTABLISHED,
    (S.ESTABLISHED, I.RECV_DATA): S.ESTABLISHED,
    (S.ESTABLISHED, I.SEND_WINDOW): S.ESTABLISHED,
    (S.ESTABLISHED, I.RECV_WINDOW): S.ESTABLISHED,
    (S.ESTABLISHED, I.SEND_FIN): S.LOCAL_CLOSED,
    (S.ESTABLISHED, I.RECV_FIN): S.REMOTE_CLOSED,
    (S.LOCAL_CLOSED, I.RECV_ACK): S.LOCAL_CLOSED,  # we closed before the peer accepted
    (S.LOCAL_CLOSED, I.RECV_DATA): S.LOCAL_CLOSED,
    (S.LOCAL_CLOSED, I.SEND_WINDOW): S.LOCAL_CLOSED,
    (S.LOCAL_CLOSED, I.RECV_WINDOW): S.LOCAL_CLOSED,
    (S.LOCAL_CLOSED, I.RECV_FIN): S.CLOSED,
    (S.REMOTE_CLOSED, I.SEND_DATA): S.REMOTE_CLOSED,
    (S.REMOTE_CLOSED, I.RECV_WINDOW): S.REMOTE_CLOSED,
    (S.REMOTE_CLOSED, I.SEND_FIN): S.CLOSED,
}
# Either side may reset any stream that has started and is not yet freed.
TRANSITIONS |= {
    (state, event): S.RESET
    for state in (S.SYN_SENT, S.ESTABLISHED, S.LOCAL_CLOSED, S.REMOTE_CLOSED)
    for event in (I.SEND_RST, I.RECV_RST)
}

# States in which the peer may send data, and in which we may (the fast paths check
# these), in which a stream is freed, and in which a window update opens sending.
RECEIVING = frozenset(state for state, event in TRANSITIONS if event is I.RECV_DATA)
SENDING = frozenset(state for state, event in TRANSITIONS if event is I.SEND_DATA)
FREED = (S.CLOSED, S.RESET)
SENDABLE = (S.SYN_SENT, S.ESTABLISHED, S.REMOTE_CLOSED)
