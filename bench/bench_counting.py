"""Benchmark: what the metrics' byte counting costs one chunk crossing the bridge.

    .venv/bin/python bench/bench_counting.py [--calls 1000000]

Times ``TcpSide.data_received`` and ``TcpSide.deliver`` (the two methods that count)
against copies of them without the two integer additions, on the same objects, in
interleaved rounds, and puts the difference beside what one chunk costs end to end
through a link (from a throughput figure: ``--mbps`` MB/s in chunks of ``--chunk`` bytes).
No sockets, no daemons: the end-to-end figures are bench_services.py's; this one
resolves a difference too small for them to see through their run-to-run spread.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from typing import Any

from skupper.router import bridge


def _uncounted_data_received(self: Any, data: bytes) -> None:
    if not self.peer_ready:
        self._early.append(data)
        return
    if not self.peer.deliver(data) and self.transport is not None:
        self.transport.pause_reading()


def _uncounted_deliver(self: Any, data: bytes) -> bool:
    if self.dead or self.transport is None:
        return True
    self.transport.write(data)
    return not self._write_paused


class _Transport:
    def write(self, data: bytes) -> None:
        pass

    def pause_reading(self) -> None:
        pass


def _time(calls: int, receive: Any, deliver: Any, data: bytes) -> float:
    """Seconds per chunk: one data_received on a side whose peer delivers it."""
    source, sink = bridge.TcpSide(), bridge.TcpSide()
    for side in (source, sink):
        side.transport = _Transport()  # type: ignore[assignment]
        side.peer_ready = True
    source.peer, sink.peer = sink, source
    bridge.TcpSide.deliver = deliver  # type: ignore[method-assign]
    started = time.perf_counter()
    for _ in range(calls):
        receive(source, data)
    return (time.perf_counter() - started) / calls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--chunk", type=int, default=65536)
    parser.add_argument("--mbps", type=float, default=500.0,
                        help="one link's one-stream throughput, for the per-chunk cost")
    args = parser.parse_args()
    return asyncio.run(_bench(args))  # a TcpSide is made inside a running loop


async def _bench(args: argparse.Namespace) -> int:
    counted_receive, counted_deliver = bridge.TcpSide.data_received, bridge.TcpSide.deliver
    data = b"x" * args.chunk
    counted, plain = [], []
    for _ in range(args.rounds):
        counted.append(_time(args.calls, counted_receive, counted_deliver, data))
        plain.append(_time(args.calls, _uncounted_data_received, _uncounted_deliver, data))
    bridge.TcpSide.deliver = counted_deliver  # type: ignore[method-assign]
    cost = statistics.median(counted) - statistics.median(plain)
    # A chunk crosses two TCP ends per site it is counted at (in at one, out at the other).
    per_chunk = args.chunk / (args.mbps * 1e6)
    print(f"data_received + deliver per chunk: counted {statistics.median(counted) * 1e9:.0f} ns,"
          f" uncounted {statistics.median(plain) * 1e9:.0f} ns: counting adds "
          f"{cost * 1e9:.0f} ns ({args.rounds} rounds of {args.calls} calls, medians)")
    print(f"one {args.chunk}-byte chunk through a link at {args.mbps:.0f} MB/s: "
          f"{per_chunk * 1e6:.0f} us; counting is {max(cost, 0) / per_chunk:.3%} of it "
          "(target: throughput with metrics within 3% of without)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
