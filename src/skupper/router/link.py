"""The asyncio driver of one link: a TLS connection carrying a yamux session.

All protocol decisions live in ``router.protocol`` (sans-IO); this module moves bytes
between the socket and the session, turns events into stream wake-ups, runs the hello
exchange and the heartbeat, and reports why a link closed.

The TLS transport's protocol is ``router.link_transport.LinkProtocol`` from the start
(never swapped, so uvloop's transports work as asyncio's): it hands every read straight
to the session. Writes are coalesced per read: while the frames of one read are
dispatched (data, window updates, pings, for any number of streams), ``flush`` only
notes that there is something to send, and it all leaves in one ``write`` when the
read is done. Outside a read, ``flush`` writes at once. (Deferring every write to the
end of the loop iteration with ``call_soon`` was measured too: on uvloop it cost one
more loop iteration per crossing, p50 317 vs 260 us and one stream 566 vs 698 MB/s,
for no gain in connections per second; bench/bench_data_plane.py.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from skupper.certs.tls import PeerCertificate
from skupper.router.hello import (
    MAX_HELLO_BYTES,
    PROTOCOL_NAME,
    PROTOCOL_VERSION,
    STREAM_HEADERS,
    HelloError,
    encode_hello,
    parse_hello,
)
from skupper.router.link_transport import LinkProtocol
from skupper.router.protocol import session as yamux
from skupper.router.stream import LinkStream, StreamReset

log = logging.getLogger(__name__)

__all__ = ["MAX_HELLO_BYTES", "PROTOCOL_NAME", "PROTOCOL_VERSION", "LinkClosed",
           "LinkConnection", "LinkRefused"]

# Receive window we grant each stream: what one slow reader can make us hold. Larger
# than yamux's 256 KiB start so a busy 2-core machine's scheduling gaps do not stall a
# bulk stream waiting for credit (measured: bench/bench_services.py).
STREAM_WINDOW = 4 * 1024 * 1024
# Bytes queued for the TLS socket above which push-mode stream senders wait for drain.
CONGESTED_BYTES = 1024 * 1024
HELLO_TIMEOUT_SECONDS = 10.0
# Heartbeats: a ping every 2 s; a link silent for 8 s is dead (reported well within 10 s).
HEARTBEAT_INTERVAL_SECONDS = 2.0
DEAD_AFTER_SECONDS = 8.0
# A closed link gets this long to send its Go Away and TLS close_notify; then its
# transport is aborted. Without it, a close towards a silent peer waits for asyncio's
# 30 s TLS shutdown timeout, and the link is reported down and redialed only then.
CLOSE_GRACE_SECONDS = 1.0
# How a link closed by the heartbeat says why (the start of its reason).
HEARTBEAT_LOST = "no heartbeat from the remote site"
# The kernel's own bound on unacknowledged data (TCP_USER_TIMEOUT), set on link sockets
# when the heartbeat starts: a backstop above the heartbeat's, never below it, so a slow
# or lossy but alive wire is not cut by the kernel before the heartbeat would judge it.
TCP_USER_TIMEOUT_MS = 20_000

# Takes each stream the peer opens: a coroutine function (a task runs it) or a plain
# function that takes the stream at once (no task: how the bridge opens connections).
StreamHandler = Callable[[LinkStream], Awaitable[None] | None]
# The listener's judgement of a checked remote hello: None to accept, else why not.
Admission = Callable[[dict[str, Any]], str | None]

# Said by a listener that no longer trusts the dialer's certificate (in the hello's
# "error", or as a Go Away code on a link already up); the dialer stops redialing.
REVOKED_MESSAGE = "the remote site revoked this link's credentials"
GO_AWAY_REVOKED = 0x52455600  # a private code; yamux defines 0-2


class LinkClosed(Exception):
    """The link ended; ``reason`` says why in words for a user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class LinkRefused(LinkClosed):
    """This end refused the remote's hello (and told it ``reason``).

    ``claimed`` holds the checked fields of the refused hello ({} if it was malformed).
    """

    def __init__(self, reason: str, claimed: dict[str, Any]) -> None:
        super().__init__(reason)
        self.claimed = claimed


def refused_by_remote(error: str) -> str:
    """What a dialer reports when the listener's hello refused it."""
    if error == REVOKED_MESSAGE:
        return REVOKED_MESSAGE
    return f"the remote site refused the link: {error}"


class LinkConnection:
    def __init__(
        self,
        protocol: LinkProtocol,
        *,
        is_client: bool,
        local_hello: dict[str, Any],
        on_stream: StreamHandler | None = None,
        admit: Admission | None = None,
    ) -> None:
        assert protocol.transport is not None, "the protocol is connected"
        self._protocol = protocol
        self.transport: asyncio.Transport = protocol.transport
        self._is_client = is_client
        self._local_hello = {"protocol": PROTOCOL_NAME, "version": PROTOCOL_VERSION,
                             "streamHeader": STREAM_HEADERS, **local_hello}
        self._on_stream = on_stream
        self._admit = admit
        self.session = yamux.Session(is_client, initial_window=STREAM_WINDOW)
        self.streams: dict[int, LinkStream] = {}
        self.remote_hello: dict[str, Any] = {}
        # The OU of the peer's certificate (which grant issued it), set by the listener.
        self.peer_unit: str | None = None
        # The peer's verified certificate (its CN is the site name the hello had to
        # match), set by the listener once the hello was accepted.
        self.peer_certificate: PeerCertificate | None = None
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._hello_stream: asyncio.Future[LinkStream] = loop.create_future()
        self._closed: asyncio.Future[str] = loop.create_future()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._last_heard = loop.time()
        self._in_read = False  # dispatching one read's frames: writes wait for its end
        # Push-mode senders waiting for the transport to take writes again.
        self._drain_callbacks: list[Callable[[], None]] = []
        # For the metrics and the console: bytes each way, the last heartbeat's round trip.
        self.bytes_sent = 0
        self.bytes_received = 0
        self.rtt: float | None = None
        self._ping_sent: tuple[int, float] | None = None
        protocol.attach(self)  # last: bytes already received are dispatched now

    def get_extra_info(self, name: str) -> Any:
        return self.transport.get_extra_info(name)

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> dict[str, Any]:
        """Run the hello exchange; return the remote's hello. Raises LinkClosed."""
        try:
            async with asyncio.timeout(HELLO_TIMEOUT_SECONDS):
                self.remote_hello = await self._exchange_hello()
        except TimeoutError:
            self.close("the remote site did not complete the link hello in time")
        except LinkClosed as exc:
            # The hello's own reason (e.g. revoked) beats the close that followed it.
            self.close(exc.reason)
            raise
        if self._closed.done():
            raise LinkClosed(self._closed.result())
        self._spawn(self._heartbeat(), "link-heartbeat")
        return self.remote_hello

    async def wait_closed(self) -> str:
        return await asyncio.shield(self._closed)

    @property
    def is_closed(self) -> bool:
        return self._closed.done()

    @property
    def close_reason(self) -> str | None:
        return self._closed.result() if self._closed.done() else None

    def close(self, reason: str, *, go_away: bool = True,
              grace: float = CLOSE_GRACE_SECONDS) -> None:
        """Close now: streams are reset, waiters told ``reason`` at once.

        The transport gets ``grace`` seconds to deliver the Go Away and the TLS goodbye,
        then is aborted: nothing waits for a peer that may be gone.
        """
        if self._closed.done():
            return
        self._closed.set_result(reason)
        if go_away:
            with contextlib.suppress(Exception):
                self.session.go_away(0)
        with contextlib.suppress(Exception):
            self._write_out()  # what is queued (the Go Away too) goes before the close
        for stream in list(self.streams.values()):
            stream.abort(reason)
        if not self._hello_stream.done():
            self._hello_stream.set_exception(LinkClosed(reason))
            self._hello_stream.exception()  # retrieved here: nobody may be waiting
        self._wake_drain_callbacks()
        transport = self.transport
        transport.close()
        if grace <= 0:
            transport.abort()
        else:
            self._loop.call_later(grace, transport.abort)
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                task.cancel()

    def revoke(self) -> None:
        """Close a link whose peer's certificate is no longer trusted, telling it why."""
        if self._closed.done():
            return
        with contextlib.suppress(Exception):
            self.session.go_away(GO_AWAY_REVOKED)
        self.close(REVOKED_MESSAGE, go_away=False)

    async def aclose(self, reason: str) -> None:
        self.close(reason)
        # Bounded: the transport is aborted after the grace whatever the peer does.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_GRACE_SECONDS + 1.0):
                await asyncio.shield(self._protocol.closed)
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, coro: Awaitable[Any], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- streams -----------------------------------------------------------------------

    def set_stream_handler(self, handler: StreamHandler | None) -> None:
        """Who takes the streams the peer opens from now on (None: they are reset)."""
        self._on_stream = handler

    def open_stream(self) -> LinkStream:
        if self._closed.done():
            raise LinkClosed(self._closed.result())
        stream_id = self.session.open_stream()
        stream = LinkStream(self, stream_id)
        self.streams[stream_id] = stream
        self.flush()
        return stream

    @property
    def congested(self) -> bool:
        """More than CONGESTED_BYTES wait to go out: push-mode senders should wait
        (``when_drained``)."""
        return self.transport.get_write_buffer_size() > CONGESTED_BYTES

    def flush(self) -> None:
        """Send what the session queued: now, or at the end of the read being handled."""
        if not self._in_read:
            self._write_out()

    def send_now(self, stream_id: int, data: bytes) -> int:
        """Write ``data`` on the stream as one frame at once, if it can go on its own (no
        read being handled, nothing queued, room in the window): its length, else 0 and
        nothing sent (the caller takes the general path: ``session.send`` and ``flush``).
        The small write of a request or an answer then costs one call and one join."""
        if self._in_read:
            return 0
        frame = self.session.data_frame(stream_id, data)
        if frame is None:
            return 0
        if not self.transport.is_closing():
            self.bytes_sent += len(frame)
            self.transport.write(frame)
        return len(data)

    def _write_out(self) -> None:
        # One write of the joined frames, not writelines: both loops' TLS layers make one
        # TLS record per piece, so each 12-byte frame header would be a record of its own.
        data = self.session.data_to_send()
        if data and not self.transport.is_closing():
            self.bytes_sent += len(data)
            self.transport.write(data)

    async def drain(self) -> None:
        """Write what is queued; return once the transport takes more. Raises LinkClosed."""
        if self._closed.done():
            raise LinkClosed(self._closed.result())
        self._write_out()
        await self._protocol.drain()
        if self._closed.done():
            raise LinkClosed(self._closed.result())

    def when_drained(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the transport takes writes again (or the link closed)."""
        if self._closed.done() or not self._protocol.write_paused:
            self._loop.call_soon(callback)
        else:
            self._drain_callbacks.append(callback)

    def _wake_drain_callbacks(self) -> None:
        # In the order they waited: with many streams write-blocked, each gets its turn.
        callbacks, self._drain_callbacks = self._drain_callbacks, []
        for callback in callbacks:
            callback()

    # -- the hello ---------------------------------------------------------------------

    async def _exchange_hello(self) -> dict[str, Any]:
        try:
            return await self._hello_exchange()
        except StreamReset as exc:
            reason = self._closed.result() if self._closed.done() else str(exc)
            raise LinkClosed(reason) from None

    async def _hello_exchange(self) -> dict[str, Any]:
        if self._is_client:
            stream = self.open_stream()
            await stream.write(self._encode_hello())
            remote = await self._read_hello(stream)
            if "error" in remote:
                raise LinkClosed(refused_by_remote(remote["error"]))
        else:
            stream = await self._hello_stream
            claimed: dict[str, Any] = {}
            try:
                claimed = await self._read_hello(stream)
                refusal = self._admit(claimed) if self._admit is not None else None
            except HelloError as exc:
                refusal = str(exc)
            if refusal is not None:
                # Tell the dialer why, so it reports it; then the link closes.
                await stream.write(encode_hello({"protocol": PROTOCOL_NAME,
                                                 "version": PROTOCOL_VERSION,
                                                 "error": refusal}))
                await stream.close()
                raise LinkRefused(refusal, claimed)
            remote = claimed
            await stream.write(self._encode_hello())
        await stream.close()
        return remote

    def _encode_hello(self) -> bytes:
        return encode_hello(self._local_hello)

    async def _read_hello(self, stream: LinkStream) -> dict[str, Any]:
        """The remote's checked hello; HelloError (a LinkClosed on the dialer) if bad."""
        try:
            line = await stream.readline(MAX_HELLO_BYTES)
        except StreamReset as exc:
            if str(exc) != "line too long":
                raise
            error = HelloError(f"the link hello is over {MAX_HELLO_BYTES} bytes")
        else:
            try:
                return parse_hello(line, from_dialer=not self._is_client)
            except HelloError as exc:
                error = exc
        if self._is_client:
            raise LinkClosed(f"the remote site sent a bad link hello: {error}")
        raise error

    # -- reading and events (LinkProtocol's callbacks) -----------------------------------

    def link_data(self, data: memoryview) -> None:
        if self._closed.done():
            return
        self.bytes_received += len(data)
        self._last_heard = self._loop.time()
        self._in_read = True
        try:
            single = self.session.receive_one_data_frame(data)
            if single is not None:  # one data frame: what _dispatch does with DataReceived
                if (known := self.streams.get(single[0])) is not None:
                    known.feed(single[1])
            else:
                for event in self.session.receive_data(data):
                    self._dispatch(event)
        finally:
            self._in_read = False
        self._write_out()

    def link_lost(self, reason: str) -> None:
        self.close(reason, go_away=False)

    def link_writable(self) -> None:
        self._wake_drain_callbacks()

    def _dispatch(self, event: object) -> None:
        match event:
            case yamux.StreamOpened(stream_id=sid):
                stream = LinkStream(self, sid)
                self.streams[sid] = stream
                # The listener's first incoming stream is the hello; the dialer opens its own.
                if not self._is_client and not self._hello_stream.done():
                    self._hello_stream.set_result(stream)
                elif self._on_stream is not None:
                    taking = self._on_stream(stream)
                    if taking is not None:
                        self._spawn(taking, f"link-stream-{sid}")
                else:
                    stream.reset()
            case yamux.DataReceived(stream_id=sid, data=data):
                if (known := self.streams.get(sid)) is not None:
                    known.feed(data)
            case yamux.StreamEnded(stream_id=sid):
                if (known := self.streams.get(sid)) is not None:
                    known.feed_eof()
            case yamux.StreamReset(stream_id=sid):
                if (known := self.streams.get(sid)) is not None:
                    known.abort("reset by the remote end")
            case yamux.WindowUpdated(stream_id=sid):
                if (known := self.streams.get(sid)) is not None:
                    known.window_opened()
            case yamux.StreamClosed(stream_id=sid):
                self.streams.pop(sid, None)
            case yamux.GoAwayReceived(code=code):
                revoked = code == GO_AWAY_REVOKED
                self.close(REVOKED_MESSAGE if revoked else "the remote site closed the link",
                           go_away=False)
            case yamux.ConnectionTerminated(reason=why):
                self.close(f"link protocol error: {why}", go_away=False)
            case yamux.PingAcknowledged(opaque=opaque):
                sent = self._ping_sent
                if sent is not None and sent[0] == opaque:
                    self.rtt = time.perf_counter() - sent[1]
            case _:
                pass  # pings are answered by the session; any frame counts as heard

    async def _heartbeat(self) -> None:
        loop = asyncio.get_running_loop()
        _bound_unacknowledged(self.transport)
        counter = 0
        while not self._closed.done():
            await asyncio.sleep(HEARTBEAT_INTERVAL_SECONDS)
            silent = loop.time() - self._last_heard
            if silent > DEAD_AFTER_SECONDS:
                # The peer is silent: its goodbye will not come, so no grace either.
                self.close(f"{HEARTBEAT_LOST} for {silent:.0f} s", grace=0)
                return
            counter = (counter + 1) & 0xFFFFFFFF
            # Not loop.time(): uvloop's counts whole milliseconds, and a loopback
            # round trip is well under one (it would read 0).
            self._ping_sent = (counter, time.perf_counter())
            self.session.ping(counter)
            self.flush()


def _bound_unacknowledged(transport: asyncio.Transport) -> None:
    """Let the kernel, too, give up on a peer that stopped acknowledging (TCP_USER_TIMEOUT)."""
    sock = transport.get_extra_info("socket")
    option = getattr(socket, "TCP_USER_TIMEOUT", None)
    if sock is None or option is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, option, TCP_USER_TIMEOUT_MS)
