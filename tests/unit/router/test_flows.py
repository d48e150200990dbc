"""FlowLog: records per connection, totals that only grow, bounded memory."""

from __future__ import annotations

from dataclasses import dataclass

from skupper.router.flows import (
    CLOSED,
    CONNECTOR,
    LISTENER,
    RECENT_CLOSED,
    REFUSED,
    RESET,
    FlowLog,
)


@dataclass
class End:
    received: int = 0
    sent: int = 0


def test_a_listener_end_counts_from_the_clients_side() -> None:
    log = FlowLog()
    end = End()
    record = log.opened(LISTENER, "backend", "127.0.0.1:5000", "e", "w", ["e", "w"], end)
    end.received, end.sent = 100, 7  # the client sent 100 bytes, received 7
    (totals,) = log.series().values()
    assert (totals.opened, totals.closed, totals.sent, totals.received) == (1, 0, 100, 7)
    (live,) = log.records({"e": "east", "w": "west"})
    assert live["state"] == "open" and live["sites"] == ["east", "west"]
    assert (live["bytesIn"], live["bytesOut"]) == (100, 7)
    end.received = 150
    log.closed(record, CLOSED)
    log.closed(record, CLOSED)  # twice: counted once
    (totals,) = log.series().values()
    assert (totals.opened, totals.closed, totals.sent, totals.received) == (1, 1, 150, 7)
    (done,) = log.records({})
    assert done["state"] == CLOSED and done["bytesIn"] == 150


def test_a_connector_end_is_recorded_but_not_counted_twice() -> None:
    log = FlowLog()
    end = End(received=9, sent=40)  # from the server 9 bytes, to the server 40
    record = log.opened(CONNECTOR, "backend", "10.0.0.1:1", "e", "w", ["e", "w"], end)
    assert log.series() == {}
    (live,) = log.records({})
    assert (live["bytesIn"], live["bytesOut"], live["role"]) == (40, 9, CONNECTOR)
    log.closed(record, RESET)
    assert log.records({})[0]["state"] == RESET


def test_refusals_and_the_closed_ring_are_bounded() -> None:
    log = FlowLog()
    for _ in range(RECENT_CLOSED + 10):
        log.refuse("nothing", "127.0.0.1:1", "e")
    assert log.refused == {"nothing": RECENT_CLOSED + 10}
    records = log.records({})
    assert len(records) == RECENT_CLOSED and records[0]["state"] == REFUSED
