"""Benchmark: the Python cost of one crossing of a site, with no I/O at all.

    .venv/bin/python bench/bench_crossing.py [--echoes 100000] [--loop asyncio|uvloop]

Two LinkConnections (dialer and listener) are joined by transports that only record
what is written; a TcpSide and a StreamSide are spliced at each end, as the bridge
splices a connection. Each echo hands 64 bytes to the dialer's TcpSide (as if read from
a client), carries the frame it writes to the listener's link (as if read from TLS), and
back the other way. Timed apart: "outbound" (a TCP read becoming a link write) and
"inbound" (a link read becoming a TCP write), in microseconds per crossing.

It measures only our code on a warm cache: in a real daemon each crossing also runs the
loop, TLS and two syscalls, and the interpreter's caches are cold between crossings, so
the same Python costs a few times more there (bench_services.py measures the whole).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

# From the venv the bench runs with; PYTHONPATH=<other checkout>/src measures that code.
from skupper.router.link import LinkConnection
from skupper.router.link_transport import LinkProtocol
from skupper.router.splice import StreamSide, TcpSide
from skupper.router.stream import LinkStream

ECHO = b"r" * 64


class RecordingTransport:
    """Takes writes and keeps them; says it is never full and never closing."""

    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))

    def take(self) -> bytes:
        data, self.written = b"".join(self.written), []
        return data

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def can_write_eof(self) -> bool:
        return True


def _read(protocol: LinkProtocol, data: bytes) -> None:
    """What the TLS layer does with decrypted bytes: into the buffer, then tell."""
    buffer = protocol.get_buffer(len(data))
    buffer[: len(data)] = data
    protocol.buffer_updated(len(data))


def _spliced(stream: LinkStream) -> tuple[TcpSide, RecordingTransport]:
    tcp, transport = TcpSide(), RecordingTransport()
    tcp.connection_made(transport)  # type: ignore[arg-type]
    side = StreamSide(stream)
    tcp.start(side)
    side.start(tcp)
    return tcp, transport


async def measure(echoes: int) -> tuple[float, float]:
    """Microseconds per crossing: (outbound, inbound)."""
    wires = RecordingTransport(), RecordingTransport()
    ends = LinkProtocol(), LinkProtocol()
    for protocol, wire in zip(ends, wires, strict=True):
        protocol.connection_made(wire)  # type: ignore[arg-type]
    accepted: list[LinkStream] = []
    dialer = LinkConnection(ends[0], is_client=True, local_hello={})
    listener = LinkConnection(ends[1], is_client=False, local_hello={},
                              on_stream=accepted.append)
    listener._hello_stream.set_result(None)  # type: ignore[arg-type]  # no hello here
    stream = dialer.open_stream()
    _read(ends[1], wires[0].take())  # SYN
    _read(ends[0], wires[1].take())  # ACK
    near, near_wire = _spliced(stream)
    far, far_wire = _spliced(accepted[0])
    outbound = inbound = 0
    for _ in range(echoes):
        started = time.perf_counter_ns()
        near.data_received(ECHO)  # a client's request, read at the dialer's site
        crossed = time.perf_counter_ns()
        frame = wires[0].take()
        arrived = time.perf_counter_ns()
        _read(ends[1], frame)  # the request reaches the listener's site
        delivered = time.perf_counter_ns()
        if far_wire.take() != ECHO:
            raise RuntimeError("the request did not arrive whole")
        far.data_received(ECHO)  # the server's answer goes back, untimed
        _read(ends[0], wires[1].take())
        near_wire.take()
        outbound += crossed - started
        inbound += delivered - arrived
    return outbound / echoes / 1e3, inbound / echoes / 1e3


def _runner(loop: str) -> Callable[[Coroutine[Any, Any, tuple[float, float]]],
                                   tuple[float, float]]:
    if loop == "uvloop":
        import uvloop
        return uvloop.run
    return asyncio.run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--echoes", type=int, default=100_000)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="uvloop")
    args = parser.parse_args()
    outbound, inbound = _runner(args.loop)(measure(args.echoes))
    print(f"{args.echoes} echoes of {len(ECHO)} bytes on {args.loop}: outbound (TCP read ->"
          f" link write) {outbound:.2f} us, inbound (link read -> TCP write) {inbound:.2f}"
          " us per crossing")
    return 0


if __name__ == "__main__":
    sys.exit(main())
