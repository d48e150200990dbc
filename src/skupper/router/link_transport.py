"""The TLS connection under a link: one asyncio protocol, the link's from the start.

The transport's protocol is never swapped. Earlier, a link was built on asyncio streams
and then swapped the transport's protocol for one that fed the yamux session directly;
uvloop's TLS transport does not support swapping a protocol that way (the connections
were reset), so the link could only run on the standard loop. Here the loop builds
``LinkProtocol`` itself (``create_connection`` / ``create_server``), so the same code
runs on asyncio's loop and on uvloop's.

It is a BufferedProtocol: the TLS layer (asyncio's and uvloop's alike) decrypts
straight into one buffer per link, reused for every read, instead of allocating a new
bytes object of the largest read size for every TLS record (that allocation, its page
faults and the joins after it were most of what uvloop's daemons spent per byte).

Until the ``LinkConnection`` attaches (``attach``), reading is paused and whatever
arrived is held, so nothing is lost between the handshake and the link's start, and
nothing unbounded is held either.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Protocol, cast


class LinkEvents(Protocol):
    """What the link above the protocol is told (``router.link.LinkConnection``)."""

    def link_data(self, data: memoryview) -> None: ...
    def link_lost(self, reason: str) -> None: ...
    def link_writable(self) -> None: ...


def lost_reason(exc: BaseException | None) -> str:
    """Why the TLS connection under a link ended, in words for a user."""
    if isinstance(exc, ssl.SSLError):
        text = str(exc.reason or exc)
        if "CERTIFICATE" in text.upper() or "UNKNOWN_CA" in text.upper():
            return "the remote site refused this site's link certificate"
        return f"TLS failed: {text}"
    if isinstance(exc, OSError):
        return f"the connection broke: {exc.strerror or exc}"
    return "the remote site closed the link"


# One link's read buffer: the largest read the TLS layer hands on at once.
READ_BUFFER_BYTES = 256 * 1024


class LinkProtocol(asyncio.BufferedProtocol):
    """The protocol of a link's TLS transport; ``on_made`` is told once it is connected."""

    def __init__(self, on_made: Callable[[LinkProtocol], None] | None = None) -> None:
        self._on_made = on_made
        self.transport: asyncio.Transport | None = None
        self._link: LinkEvents | None = None
        self._early: list[bytes] = []
        self._read_buffer = memoryview(bytearray(READ_BUFFER_BYTES))
        self._lost: str | None = None
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport, only alike.
        self.transport = cast(asyncio.Transport, transport)
        if self._link is None:
            self.transport.pause_reading()  # held until the link attaches
        if self._on_made is not None:
            self._on_made(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        # The view is only valid until the next read: the link takes what it keeps.
        if self._link is not None:
            self._link.link_data(self._read_buffer[:nbytes])
        else:
            self._early.append(bytes(self._read_buffer[:nbytes]))  # reading is paused

    def eof_received(self) -> bool:
        self._end("the remote site closed the link")
        return False  # close the transport: a link is never half-open

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(lost_reason(exc))
        self._write_paused = False
        self._wake_drainers()
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_drainers()
        if self._link is not None:
            self._link.link_writable()

    # -- for the link ----------------------------------------------------------------------

    def attach(self, link: LinkEvents) -> None:
        """From now on ``link`` gets every byte and the end; held bytes come first."""
        self._link = link
        early, self._early = self._early, []
        for data in early:
            link.link_data(memoryview(data))
        if self._lost is not None:
            link.link_lost(self._lost)
        elif self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    @property
    def write_paused(self) -> bool:
        return self._write_paused

    async def drain(self) -> None:
        """Return once the transport takes writes again (at once if it does now)."""
        if not self._write_paused or self.closed.done():
            return
        waiter = asyncio.get_running_loop().create_future()
        self._drain_waiters.append(waiter)
        await waiter

    def _wake_drainers(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _end(self, reason: str) -> None:
        if self._lost is not None:
            return
        self._lost = reason
        if self._link is not None:
            self._link.link_lost(reason)


async def dial_tls(host: str, port: int, tls: ssl.SSLContext, *,
                   server_hostname: str | None = None) -> LinkProtocol:
    """A TLS connection to ``host:port`` with a LinkProtocol on it (raises as the loop)."""
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(
        LinkProtocol, host, port, ssl=tls, server_hostname=server_hostname or host)
    return protocol
