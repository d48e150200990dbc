"""Connection records and traffic counters: what the bridge carried, for people and Prometheus.

Counting must cost the data path almost nothing, so the bridge's TCP ends count bytes
into two plain integers of their own (``TcpSide.received`` / ``sent``) and a record
only points at its end while the connection is open; figures are read when someone
asks (``snapshot``), and folded into the running totals once, when it closes.

Each site records the connections it terminates in TCP: a listener's site the client's
end (``role`` listener), a connector's site the server's end (``role`` connector). The
counters (``skupper_connections_opened_total`` and the rest) count at the listener's
site only, so a sum over every site of the network counts each connection once.

Memory is bounded: open records live as long as their connection; closed ones are kept
in a ring of ``RECENT_CLOSED``; counters have one entry per (routing key, source site,
destination site), at most ``MAX_SERIES`` of them (the rest fold into an ``other`` key).
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

RECENT_CLOSED = 256
MAX_SERIES = 2048
OVERFLOW_KEY = "other"

OPEN, CLOSED, RESET, REFUSED = "open", "closed", "reset", "refused"
LISTENER, CONNECTOR = "listener", "connector"


class CountingEnd(Protocol):
    """A TCP end of the bridge: bytes from its socket and bytes written to it."""

    received: int
    sent: int


@dataclass
class FlowRecord:
    id: int
    role: str  # LISTENER: the client's end is here; CONNECTOR: the server's end is here
    routing_key: str
    client: str  # host:port of the application client
    source_site: str  # site ids
    dest_site: str
    path: list[str]  # the sites crossed, source first
    started: float
    end: CountingEnd | None = None
    ended: float | None = None
    state: str = OPEN
    # Final figures, from the client's point of view: in = from the client, out = to it.
    bytes_in: int = 0
    bytes_out: int = 0

    def figures(self) -> tuple[int, int]:
        end = self.end
        if end is None:
            return self.bytes_in, self.bytes_out
        # The listener's end faces the client; the connector's end faces the server.
        return (end.received, end.sent) if self.role == LISTENER else (end.sent, end.received)

    def snapshot(self, names: dict[str, str]) -> dict[str, Any]:
        bytes_in, bytes_out = self.figures()
        until = self.ended if self.ended is not None else time.time()
        return {
            "id": self.id,
            "role": self.role,
            "routingKey": self.routing_key,
            "client": self.client,
            "sourceSite": names.get(self.source_site, self.source_site),
            "destSite": names.get(self.dest_site, self.dest_site),
            "sites": [names.get(site, site) for site in self.path],
            "bytesIn": bytes_in,
            "bytesOut": bytes_out,
            "started": _rfc3339(self.started),
            "duration": round(until - self.started, 3),
            "state": self.state,
        }


@dataclass
class SeriesTotals:
    opened: int = 0
    closed: int = 0
    sent: int = 0  # bytes the clients sent
    received: int = 0  # bytes the clients received


@dataclass
class FlowLog:
    """Open and recently closed connections of this site, and the totals of the finished."""

    open: dict[int, FlowRecord] = field(default_factory=dict)
    recent: deque[FlowRecord] = field(default_factory=lambda: deque(maxlen=RECENT_CLOSED))
    totals: dict[tuple[str, str, str], SeriesTotals] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)  # routing key -> count
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def opened(self, role: str, routing_key: str, client: str, source: str, dest: str,
               path: list[str], end: CountingEnd) -> FlowRecord:
        record = FlowRecord(next(self._ids), role, routing_key, client, source, dest,
                            list(path), time.time(), end)
        self.open[record.id] = record
        if role == LISTENER:
            self._series(record).opened += 1
        return record

    def closed(self, record: FlowRecord, state: str) -> None:
        if self.open.pop(record.id, None) is None:
            return
        record.bytes_in, record.bytes_out = record.figures()
        record.end, record.ended, record.state = None, time.time(), state
        self.recent.append(record)
        if record.role == LISTENER:
            series = self._series(record)
            series.closed += 1
            series.sent += record.bytes_in
            series.received += record.bytes_out

    def refuse(self, routing_key: str, client: str, source: str) -> None:
        """A client whose service had no reachable connector: recorded, never opened."""
        record = FlowRecord(next(self._ids), LISTENER, routing_key, client, source, "",
                            [source], time.time(), ended=time.time(), state=REFUSED)
        self.recent.append(record)
        key = routing_key if routing_key in self.refused or len(self.refused) < MAX_SERIES \
            else OVERFLOW_KEY
        self.refused[key] = self.refused.get(key, 0) + 1

    def series(self) -> dict[tuple[str, str, str], SeriesTotals]:
        """Totals per (routing key, source, destination), open connections' bytes included."""
        out = {key: SeriesTotals(t.opened, t.closed, t.sent, t.received)
               for key, t in self.totals.items()}
        for record in self.open.values():
            if record.role != LISTENER:
                continue
            bytes_in, bytes_out = record.figures()
            series = out.setdefault(self._key(record), SeriesTotals())
            series.sent += bytes_in
            series.received += bytes_out
        return out

    def records(self, names: dict[str, str]) -> list[dict[str, Any]]:
        """Open connections first (oldest first), then the recently closed (newest first)."""
        live = sorted(self.open.values(), key=lambda r: r.id)
        return [r.snapshot(names) for r in live] + [
            r.snapshot(names) for r in reversed(self.recent)]

    def _key(self, record: FlowRecord) -> tuple[str, str, str]:
        key = (record.routing_key, record.source_site, record.dest_site)
        if key in self.totals or len(self.totals) < MAX_SERIES:
            return key
        return (OVERFLOW_KEY, OVERFLOW_KEY, OVERFLOW_KEY)

    def _series(self, record: FlowRecord) -> SeriesTotals:
        return self.totals.setdefault(self._key(record), SeriesTotals())


def _rfc3339(moment: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))
