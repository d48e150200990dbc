"""What a yamux session reports from the bytes it receives (``Session.receive_data``)."""

from __future__ import annotations

from dataclasses import dataclass


class Event:
    """Base of everything ``receive_data`` returns."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class StreamOpened(Event):
    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamAccepted(Event):
    stream_id: int


@dataclass(frozen=True, slots=True)
class DataReceived(Event):
    stream_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class StreamEnded(Event):
    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamReset(Event):
    """The peer reset the stream; StreamClosed follows at once."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class WindowUpdated(Event):
    stream_id: int
    window: int


@dataclass(frozen=True, slots=True)
class StreamClosed(Event):
    """Both directions are done (FINs or a reset) and the stream's state is freed."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class PingReceived(Event):
    opaque: int


@dataclass(frozen=True, slots=True)
class PingAcknowledged(Event):
    opaque: int


@dataclass(frozen=True, slots=True)
class GoAwayReceived(Event):
    code: int


@dataclass(frozen=True, slots=True)
class ConnectionTerminated(Event):
    code: int
    reason: str
