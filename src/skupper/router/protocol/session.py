"""A yamux session as a sans-IO state machine: many flow-controlled streams, one byte pipe.

The driver feeds peer bytes to ``receive_data``, acts on the returned events, and
writes whatever ``data_to_send`` returns. Any peer behaviour the spec does not allow
ends the session: a Go Away (protocol error) is queued and ``ConnectionTerminated``
is returned. Misuse of the local API raises instead (``StreamClosedError``, ...).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from skupper.router.protocol.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    GoAwayReceived,
    PingAcknowledged,
    PingReceived,
    StreamAccepted,
    StreamClosed,
    StreamEnded,
    StreamOpened,
    StreamReset,
    WindowUpdated,
)
from skupper.router.protocol.frames import (
    HEADER,
    HEADER_SIZE,
    MAX_DATA_PAYLOAD,
    MAX_UINT32,
    VERSION,
    Flag,
    Frame,
    FrameParser,
    FrameType,
    GoAwayCode,
    ProtocolError,
)
from skupper.router.protocol.stream_states import (
    FREED,
    RECEIVING,
    SENDABLE,
    SENDING,
    TRANSITIONS,
    Input,
    StreamState,
)

# Re-exported: drivers and tests take the whole session API from this module.
__all__ = [
    "INITIAL_STREAM_WINDOW", "MAX_SEND_FRAME", "MAX_STREAMS", "MAX_WINDOW",
    "RECENTLY_CLOSED_LIMIT", "TRANSITIONS", "ConnectionTerminated", "DataReceived", "Event",
    "GoAwayReceived", "Input", "PingAcknowledged", "PingReceived", "Session",
    "SessionClosedError", "SessionError", "StreamAccepted", "StreamClosed",
    "StreamClosedError", "StreamEnded", "StreamOpened", "StreamReset", "StreamState",
    "TooManyStreamsError", "WindowUpdated",
]

# Fixed by the yamux spec: every stream starts with this much credit in each direction.
INITIAL_STREAM_WINDOW = 256 * 1024

# Concurrent streams per session; bounds the memory a peer can make us hold (each
# stream holds at most one window, and an idle one ~3-4 KiB per daemon). 8192 holds
# issue 14's 5,000 idle connections through one link with room to spare; the site
# daemon raises its open-files limit to the hard limit, since each stream's far end is
# a socket.
MAX_STREAMS = 8192

# Largest data frame we send. 12 header bytes per 64 KiB is ~0.02% overhead, and four
# frames per initial window still let other streams interleave on the connection.
MAX_SEND_FRAME = 64 * 1024

# Largest receive window we advertise; also caps a data frame (and so parser memory).
MAX_WINDOW = MAX_DATA_PAYLOAD

# Freed stream ids remembered so frames already in flight (data after our RST, a
# window update after both FINs) are dropped quietly. Older ids fall back to the
# "below the highest id opened" rule, so this only bounds memory, not correctness.
RECENTLY_CLOSED_LIMIT = 1024


_SYN, _ACK, _FIN, _RST = (int(f) for f in (Flag.SYN, Flag.ACK, Flag.FIN, Flag.RST))
S, I = StreamState, Input  # noqa: E741 - shorthand only


class SessionError(Exception):
    """The local application used the session wrongly."""


class StreamClosedError(SessionError):
    """The stream is unknown, or our direction of it is already closed or reset."""


class SessionClosedError(SessionError):
    """Go Away was sent or received, or the session was terminated."""


class TooManyStreamsError(SessionError):
    """``max_streams`` streams are open, or the stream id space is used up."""


@dataclass(slots=True)
class _Stream:
    recv_window: int  # credit we gave the peer, not yet used
    state: StreamState = S.IDLE
    awaiting_ack: bool = False  # we sent SYN and the peer has not ACKed yet
    send_window: int = INITIAL_STREAM_WINDOW  # credit the peer gave us
    unconsumed: int = 0  # delivered to the application, not yet consumed
    pending_credit: int = 0  # consumed, not yet returned to the peer


class Session:
    """One side of a yamux session; ``is_client`` is the dialer (odd stream ids).

    Events come only from ``receive_data``; local calls just queue bytes, so a stream
    freed by our own ``close_stream`` (it returns True) or ``reset_stream`` gets no event.
    """

    def __init__(
        self,
        is_client: bool,
        *,
        initial_window: int = INITIAL_STREAM_WINDOW,
        max_streams: int = MAX_STREAMS,
    ) -> None:
        if not INITIAL_STREAM_WINDOW <= initial_window <= MAX_WINDOW:
            # The spec fixes the starting window; we can only advertise more, never less.
            raise ValueError(f"initial_window must be in [{INITIAL_STREAM_WINDOW}, {MAX_WINDOW}]")
        if max_streams < 1:
            raise ValueError("max_streams must be positive")
        self.is_client = is_client
        self._window = initial_window
        self._max_streams = max_streams
        self._next_id = 1 if is_client else 2
        self._peer_parity = 0 if is_client else 1
        self._max_peer_id = 0
        self._streams: dict[int, _Stream] = {}
        self._recent: OrderedDict[int, StreamState] = OrderedDict()
        # No single frame may exceed the whole window we grant.
        self._parser = FrameParser(max_payload=initial_window)
        # Pieces to send, in order: headers and payloads. Immutable payloads are kept by
        # reference, so a data frame's bytes are copied once (in data_to_send), not twice.
        self._out: list[bytes | memoryview] = []
        self._local_go_away = False
        self._remote_go_away = False
        self._terminated = False

    @property
    def open_stream_ids(self) -> frozenset[int]:
        return frozenset(self._streams)

    @property
    def terminated(self) -> bool:
        return self._terminated

    def stream_state(self, stream_id: int) -> StreamState:
        stream = self._streams.get(stream_id)
        if stream is not None:
            return stream.state
        return self._recent.get(stream_id, S.IDLE)

    def send_window(self, stream_id: int) -> int:
        stream = self._streams.get(stream_id)
        return stream.send_window if stream is not None else 0

    def data_to_send(self) -> bytes:
        out = self._out
        if not out:
            return b""
        self._out = []
        return out[0] if len(out) == 1 and isinstance(out[0], bytes) else b"".join(out)

    def open_stream(self) -> int:
        if self._terminated or self._local_go_away or self._remote_go_away:
            raise SessionClosedError("session is going away; no new streams")
        if len(self._streams) >= self._max_streams:
            raise TooManyStreamsError(f"{self._max_streams} streams already open")
        stream_id = self._next_id
        if stream_id > MAX_UINT32:
            raise TooManyStreamsError("stream ids exhausted")
        self._next_id += 2
        stream = _Stream(self._window, awaiting_ack=True)
        self._apply(stream, I.SEND_SYN, local=True)
        self._streams[stream_id] = stream
        # A window update (not data) so the peer learns of the stream before any payload.
        self._queue(
            FrameType.WINDOW_UPDATE, Flag.SYN, stream_id, self._window - INITIAL_STREAM_WINDOW
        )
        return stream_id

    def send(self, stream_id: int, data: bytes | bytearray | memoryview) -> int:
        stream = self._local_stream(stream_id)
        self._apply(stream, I.SEND_DATA, local=True)
        n = min(len(data), stream.send_window)
        if n <= 0:
            return 0
        append, pack = self._out.append, HEADER.pack
        view = memoryview(data)
        if not isinstance(view.obj, bytes):
            view = memoryview(bytes(view))  # the caller may change its buffer later
        for start in range(0, n, MAX_SEND_FRAME):
            size = min(MAX_SEND_FRAME, n - start)
            append(pack(VERSION, FrameType.DATA, 0, stream_id, size))
            append(view[start : start + size])
        stream.send_window -= n
        return n

    def data_frame(self, stream_id: int, data: bytes) -> bytes | None:
        """The fast path of ``send`` + ``data_to_send`` for the most common write: when
        nothing is queued and ``data`` fits one frame and the stream's window, that frame
        (header and payload) to write now, accounted for as ``send`` would; else None,
        having changed nothing (use ``send``, which also raises for a closed stream)."""
        n = len(data)
        if self._out or self._terminated or not 0 < n <= MAX_SEND_FRAME:
            return None
        stream = self._streams.get(stream_id)
        if stream is None or stream.state not in SENDING or n > stream.send_window:
            return None
        stream.send_window -= n
        return HEADER.pack(VERSION, FrameType.DATA, 0, stream_id, n) + data

    def consumed(self, stream_id: int, n: int) -> None:
        if n < 0:
            raise ValueError("consumed byte count must not be negative")
        stream = self._streams.get(stream_id)
        if stream is None or self._terminated:
            return  # already freed: nothing left to credit
        if n > stream.unconsumed:
            raise ValueError(f"consumed {n} bytes but only {stream.unconsumed} are unconsumed")
        stream.unconsumed -= n
        stream.pending_credit += n
        # Credit in batches of half a window so bulk transfer is not drowned in updates;
        # after the peer's FIN no more data can come, so credit is pointless.
        if (
            stream.pending_credit < self._window // 2
            or (stream.state, I.SEND_WINDOW) not in TRANSITIONS
        ):
            return
        self._apply(stream, I.SEND_WINDOW, local=True)
        delta, stream.pending_credit = stream.pending_credit, 0
        stream.recv_window += delta
        self._queue(FrameType.WINDOW_UPDATE, Flag.NONE, stream_id, delta)

    def close_stream(self, stream_id: int) -> bool:
        """Send FIN. True if the peer had already finished, so the stream is now freed."""
        stream = self._local_stream(stream_id)
        self._apply(stream, I.SEND_FIN, local=True)
        self._queue(FrameType.WINDOW_UPDATE, Flag.FIN, stream_id, 0)
        return self._free_if_done(stream_id, stream)

    def reset_stream(self, stream_id: int) -> None:
        """Abort both directions; a no-op for a stream that is already gone."""
        stream = self._streams.get(stream_id)
        if stream is None or self._terminated:
            return
        self._apply(stream, I.SEND_RST, local=True)
        self._queue(FrameType.WINDOW_UPDATE, Flag.RST, stream_id, 0)
        self._free_if_done(stream_id, stream)

    def ping(self, opaque: int) -> None:
        if not 0 <= opaque <= MAX_UINT32:
            raise ValueError("ping opaque value must fit in 32 bits")
        if self._terminated:
            raise SessionClosedError("session terminated")
        self._queue(FrameType.PING, Flag.SYN, 0, opaque)

    def go_away(self, code: int = GoAwayCode.NORMAL) -> None:
        """Refuse new streams from now on; existing ones may finish. Sent once."""
        if not 0 <= code <= MAX_UINT32:
            raise ValueError("go away code must fit in 32 bits")
        if self._local_go_away or self._terminated:
            return
        self._local_go_away = True
        self._queue(FrameType.GO_AWAY, Flag.NONE, 0, code)
        if code != GoAwayCode.NORMAL:
            self._terminated = True  # we declared an error: nothing more will be processed

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[Event]:
        events: list[Event] = []
        if self._terminated:
            return events
        try:
            for frame in self._parser.feed(data):
                if frame.type <= FrameType.WINDOW_UPDATE:
                    self._on_stream(frame, events)
                else:
                    self._on_session(frame, events)
        except ProtocolError as exc:
            # Sent even after a normal Go Away so the peer learns why we are leaving.
            self._terminated = self._local_go_away = True
            self._queue(FrameType.GO_AWAY, Flag.NONE, 0, exc.code)
            events.append(ConnectionTerminated(exc.code, exc.reason))
        return events

    def receive_one_data_frame(
        self, data: bytes | bytearray | memoryview
    ) -> tuple[int, bytes] | None:
        """The fast path of ``receive_data`` for the most common read: exactly one whole
        data frame without flags, for an open stream with room for it.

        Returns (stream id, payload), the frame accounted for exactly as ``receive_data``
        would have (the event it would return is ``DataReceived`` of the two); or None,
        having changed nothing, for anything else (the caller then hands the same bytes
        to ``receive_data``, which checks and reports everything). Event and frame
        objects, the parser's generator and the state table are skipped: a small echo
        crosses each site once per read, and those were most of its Python time.
        """
        size = len(data)
        if size <= HEADER_SIZE or self._terminated or self._parser.buffered:
            return None
        version, ftype, flags, stream_id, length = HEADER.unpack_from(data, 0)
        if version != VERSION or ftype != FrameType.DATA or flags or length != size - HEADER_SIZE:
            return None
        stream = self._streams.get(stream_id)
        if (
            stream is None
            or stream.awaiting_ack
            or stream.state not in RECEIVING
            or length > stream.recv_window  # also bounds it by the parser's max_payload
        ):
            return None
        stream.recv_window -= length
        stream.unconsumed += length
        return stream_id, bytes(data[HEADER_SIZE:])

    def _on_session(self, frame: Frame, events: list[Event]) -> None:
        if frame.stream_id != 0:
            raise ProtocolError(f"{frame.type.name} frame on stream {frame.stream_id}, not 0")
        if frame.type == FrameType.PING:
            if frame.flags == Flag.SYN:
                self._queue(FrameType.PING, Flag.ACK, 0, frame.length)
                events.append(PingReceived(frame.length))
            elif frame.flags == Flag.ACK:
                events.append(PingAcknowledged(frame.length))
            else:
                raise ProtocolError(f"ping with flags {int(frame.flags):#x}")
        else:
            if frame.flags:
                raise ProtocolError(f"go away with flags {int(frame.flags):#x}")
            self._remote_go_away = True
            events.append(GoAwayReceived(frame.length))

    def _on_stream(self, frame: Frame, events: list[Event]) -> None:
        # Plain ints: IntFlag's "&" builds a new enum member each time, on every frame.
        stream_id, flags = frame.stream_id, int(frame.flags)
        if stream_id == 0:
            raise ProtocolError(f"{frame.type.name} frame on session stream 0")
        stream = self._streams.get(stream_id)
        if flags & _SYN:
            if flags & _ACK:
                raise ProtocolError(f"SYN and ACK together on stream {stream_id}")
            stream = self._accept(stream_id, events)
            if stream is None:
                return
        elif stream is None:
            self._check_forgotten(stream_id)
            return
        if flags & _ACK:
            if not stream.awaiting_ack:
                raise ProtocolError(f"unexpected ACK on stream {stream_id}")
            self._apply(stream, I.RECV_ACK)
            stream.awaiting_ack = False
            events.append(StreamAccepted(stream_id))
        elif stream.awaiting_ack and not flags & _RST:
            raise ProtocolError(f"frame on stream {stream_id} before its ACK")

        if frame.length:
            if frame.type == FrameType.DATA:
                self._apply(stream, I.RECV_DATA)
                if frame.length > stream.recv_window:
                    window = stream.recv_window
                    raise ProtocolError(f"stream {stream_id}: data exceeds window {window}")
                stream.recv_window -= frame.length
                stream.unconsumed += frame.length
                events.append(DataReceived(stream_id, frame.payload))
            else:
                self._apply(stream, I.RECV_WINDOW)
                stream.send_window += frame.length
                if stream.send_window > MAX_UINT32:
                    raise ProtocolError(f"stream {stream_id}: send window overflow")
                if stream.state in SENDABLE:
                    events.append(WindowUpdated(stream_id, stream.send_window))

        if flags & _FIN:
            self._apply(stream, I.RECV_FIN)
            events.append(StreamEnded(stream_id))
            if self._free_if_done(stream_id, stream):
                events.append(StreamClosed(stream_id))
                return
        if flags & _RST:
            self._apply(stream, I.RECV_RST)
            self._free_if_done(stream_id, stream)
            events += (StreamReset(stream_id), StreamClosed(stream_id))

    def _accept(self, stream_id: int, events: list[Event]) -> _Stream | None:
        """Handle a peer SYN: a new stream, or None if refused with RST."""
        if stream_id % 2 != self._peer_parity:
            raise ProtocolError(f"peer opened stream {stream_id} with our id parity")
        if stream_id in self._streams or stream_id in self._recent:
            raise ProtocolError(f"peer reused stream id {stream_id}")
        self._max_peer_id = max(self._max_peer_id, stream_id)
        if self._local_go_away or len(self._streams) >= self._max_streams:
            # Refusal is per stream (like yamux's backlog): the session stays usable.
            self._queue(FrameType.WINDOW_UPDATE, Flag.RST, stream_id, 0)
            self._remember(stream_id, S.RESET)
            return None
        stream = _Stream(self._window)
        self._apply(stream, I.RECV_SYN)
        self._streams[stream_id] = stream
        events.append(StreamOpened(stream_id))
        self._apply(stream, I.SEND_ACK)
        self._queue(
            FrameType.WINDOW_UPDATE, Flag.ACK, stream_id, self._window - INITIAL_STREAM_WINDOW
        )
        return stream

    def _check_forgotten(self, stream_id: int) -> None:
        """Ignore frames for streams we freed; reject those for streams never opened."""
        if stream_id in self._recent:
            return
        if stream_id % 2 == self._peer_parity:
            opened = stream_id <= self._max_peer_id
        else:
            opened = stream_id < self._next_id
        if not opened:
            raise ProtocolError(f"frame for stream {stream_id}, which was never opened")

    def _local_stream(self, stream_id: int) -> _Stream:
        if self._terminated:
            raise SessionClosedError("session terminated")
        stream = self._streams.get(stream_id)
        if stream is None:
            raise StreamClosedError(f"stream {stream_id} is {self.stream_state(stream_id)}")
        return stream

    @staticmethod
    def _apply(stream: _Stream, event: Input, *, local: bool = False) -> None:
        new = TRANSITIONS.get((stream.state, event))
        if new is None:
            if local:
                raise StreamClosedError(f"cannot {event.name} in state {stream.state}")
            raise ProtocolError(f"{event.name} not allowed in state {stream.state}")
        stream.state = new

    def _free_if_done(self, stream_id: int, stream: _Stream) -> bool:
        if stream.state not in FREED:
            return False
        del self._streams[stream_id]
        self._remember(stream_id, stream.state)
        return True

    def _remember(self, stream_id: int, state: StreamState) -> None:
        self._recent[stream_id] = state
        if len(self._recent) > RECENTLY_CLOSED_LIMIT:
            self._recent.popitem(last=False)

    def _queue(self, frame_type: FrameType, flags: Flag, stream_id: int, length: int) -> None:
        self._out.append(HEADER.pack(VERSION, frame_type, flags, stream_id, length))
