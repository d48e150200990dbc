"""A slow, lossy wire without netem: hold or drop the packets of one NFQUEUE.

This kernel has no netem, so delay and loss are made in user space: an iptables rule
(``-j NFQUEUE --queue-num N``) hands each packet of a namespace's wire to this program,
which speaks the nfnetlink_queue protocol directly over an AF_NETLINK socket (stdlib
only: nothing to build or install). Each packet is dropped with probability ``loss``;
the others are released ``delay`` ms after they arrived. The delay is constant, so the
release order is the arrival order: one FIFO of (due time, packet id) and one batch
verdict ("accept every id up to this one") per release tick, never a thread or timer
per packet. Packets this program has already dropped are no longer queued, so a batch
accept cannot revive them.

Without the GSO flag the kernel segments GSO packets before queuing them, so the loss
applies to each wire-sized packet (1% loss is 1% of the MSS-sized segments).

Run inside the namespace (``ip netns exec NS python nfq_wire.py --queue 7 ...``). It
stops by itself after ``--seconds`` (every test loop is bounded) or on SIGTERM; while
it is not running, the rule's ``--queue-bypass`` lets packets through unshaped.
``--stats FILE`` writes what it did as JSON when it stops.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import select
import signal
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_CONFIG = 2
NFQNL_MSG_VERDICT_BATCH = 3
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQNL_CFG_CMD_BIND = 1
NFQNL_CFG_CMD_UNBIND = 2
NFQNL_COPY_META = 1
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLMSG_ERROR = 2
NF_DROP = 0
NF_ACCEPT = 1
SOL_NETLINK = 270
NETLINK_NO_ENOBUFS = 5

# Packets the kernel may hold for us: a 50 ms wire at ~100 MB/s keeps ~3500 in flight.
QUEUE_MAXLEN = 16384
RECV_BUFFER = 8 * 1024 * 1024


def _attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def _message(msg_type: int, queue: int, attrs: bytes, *, flags: int = 0, seq: int = 0) -> bytes:
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(queue)) + attrs
    kind = (NFNL_SUBSYS_QUEUE << 8) | msg_type
    return struct.pack("=IHHII", 16 + len(body), kind, NLM_F_REQUEST | flags, seq, 0) + body


class Wire:
    def __init__(self, queue: int, delay: float, loss: float, seed: int | None) -> None:
        self.queue = queue
        self.delay = delay
        self.loss = loss
        self.random = random.Random(seed)
        self.held: collections.deque[tuple[float, int]] = collections.deque()
        self.stats = {"packets": 0, "dropped": 0, "accepted_batches": 0, "max_held": 0}
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, 33, RECV_BUFFER)  # SO_RCVBUFFORCE (root)
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECV_BUFFER)
        # A burst larger than the buffer loses packets (they are dropped, as on a real
        # wire), not our socket: keep reading instead of failing with ENOBUFS.
        self.sock.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)
        self.sock.bind((0, 0))
        self._configure(_attr(NFQA_CFG_CMD, struct.pack("!BBH", NFQNL_CFG_CMD_UNBIND, 0, 0)),
                        check=False)
        self._configure(_attr(NFQA_CFG_CMD, struct.pack("!BBH", NFQNL_CFG_CMD_BIND, 0, 0)))
        self._configure(_attr(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META))
                        + _attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", QUEUE_MAXLEN)))

    def _configure(self, attrs: bytes, *, check: bool = True) -> None:
        self.sock.send(_message(NFQNL_MSG_CONFIG, self.queue, attrs, flags=NLM_F_ACK, seq=1))
        self.sock.settimeout(5)
        try:
            while True:
                data = self.sock.recv(65536)
                offset = 0
                while offset + 16 <= len(data):
                    length, kind = struct.unpack_from("=IH", data, offset)
                    if kind == NLMSG_ERROR:
                        (error,) = struct.unpack_from("=i", data, offset + 16)
                        if error and check:
                            raise OSError(-error, f"nfqueue config: {os.strerror(-error)}")
                        return
                    offset += max(16, (length + 3) & ~3)
        finally:
            self.sock.settimeout(None)
            self.sock.setblocking(False)

    def _packet_ids(self, data: bytes) -> list[int]:
        ids = []
        offset = 0
        while offset + 16 <= len(data):
            length, kind = struct.unpack_from("=IH", data, offset)
            if length < 16:
                break
            if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                at = offset + 16 + 4  # past nlmsghdr and nfgenmsg
                end = offset + length
                while at + 4 <= end:
                    alen, atype = struct.unpack_from("=HH", data, at)
                    if alen < 4:
                        break
                    if atype & 0x3FFF == NFQA_PACKET_HDR:
                        ids.append(struct.unpack_from("!I", data, at + 4)[0])
                        break
                    at += (alen + 3) & ~3
            offset += (length + 3) & ~3
        return ids

    def _verdict(self, packet_id: int, verdict: int, msg_type: int) -> None:
        attrs = _attr(NFQA_VERDICT_HDR, struct.pack("!II", verdict, packet_id))
        try:
            self.sock.send(_message(msg_type, self.queue, attrs))
        except BlockingIOError:
            select.select([], [self.sock], [], 1.0)
            self.sock.send(_message(msg_type, self.queue, attrs))

    def _drop(self, packet_id: int) -> None:
        self._verdict(packet_id, NF_DROP, 1)  # NFQNL_MSG_VERDICT: this one packet

    def _release_due(self, now: float) -> None:
        last = None
        while self.held and self.held[0][0] <= now:
            last = self.held.popleft()[1]
        if last is not None:
            self._verdict(last, NF_ACCEPT, NFQNL_MSG_VERDICT_BATCH)
            self.stats["accepted_batches"] += 1

    def run(self, seconds: float, stop: list[bool]) -> None:
        deadline = time.monotonic() + seconds
        while not stop[0]:
            now = time.monotonic()
            if now >= deadline:
                break
            # Short waits: a signal only sets the stop flag (select resumes after it).
            wait = min(deadline - now, 0.2)
            if self.held:
                wait = min(wait, max(0.0, self.held[0][0] - now))
            readable, _, _ = select.select([self.sock], [], [], wait)
            if readable:
                for _ in range(256):  # a burst is drained before the next release tick
                    try:
                        data = self.sock.recv(65536)
                    except BlockingIOError:
                        break
                    arrived = time.monotonic()
                    for packet_id in self._packet_ids(data):
                        self.stats["packets"] += 1
                        if self.loss and self.random.random() < self.loss:
                            self.stats["dropped"] += 1
                            self._drop(packet_id)
                        else:
                            self.held.append((arrived + self.delay, packet_id))
                self.stats["max_held"] = max(self.stats["max_held"], len(self.held))
            self._release_due(time.monotonic())
        # Whatever is still held goes out now, so stopping never loses a packet.
        self._release_due(float("inf"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queue", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--loss", type=float, default=0.0, help="drop probability, 0..1")
    parser.add_argument("--seconds", type=float, required=True, help="stop after this long")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--ready", help="file to create once the queue is bound")
    parser.add_argument("--stats", help="file to write the counters to at the end")
    args = parser.parse_args(argv)
    if not 0.0 <= args.loss <= 1.0 or args.delay_ms < 0 or args.seconds <= 0:
        parser.error("need 0 <= loss <= 1, delay >= 0, seconds > 0")
    stop = [False]

    def on_signal(_signum: int, _frame: object) -> None:
        stop[0] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    wire = Wire(args.queue, args.delay_ms / 1000.0, args.loss, args.seed)
    if args.ready:
        with open(args.ready, "w") as ready:
            ready.write(str(os.getpid()))
    wire.run(args.seconds, stop)
    if args.stats:
        with open(args.stats, "w") as out:
            json.dump(wire.stats, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
