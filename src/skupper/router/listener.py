"""The link listener: mutual TLS 1.3, accepting only certificates from the site's CA.

The TLS context (built by the daemon) requires a client certificate signed by the
site CA, so a peer with any other certificate, or none, never completes the
handshake. An accepted connection runs the link hello, which is bound to the
certificate: the site name it claims must be the certificate's CN (the name the site
gave when it redeemed its token), the certificate must not be revoked, and the daemon's
own check (``admit``: e.g. a site id that belongs to another site) must pass. A refused
dialer is told why in the listener's hello; the refusal is logged in one escaped,
rate-limited line. Then the link carries streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any

from skupper.base.text import printable
from skupper.certs.tls import GENERATED_LINK_UNIT, PeerCertificate, peer_certificate
from skupper.router.link import (
    REVOKED_MESSAGE,
    LinkClosed,
    LinkConnection,
    LinkRefused,
    StreamHandler,
)
from skupper.router.link_transport import LinkProtocol
from skupper.router.log_limit import LogLimiter

log = logging.getLogger(__name__)

# A peer that has not finished its TLS handshake by then is dropped.
HANDSHAKE_TIMEOUT_SECONDS = 10.0
# How long stopping waits for the accepted links to wind down.
STOP_TIMEOUT_SECONDS = 2.0

# Called with the connection and its peer's certificate serial once the hello is done,
# and with the same connection and None once it has closed.
IncomingHandler = Callable[[LinkConnection, int | None], None]
# Whether a certificate (its serial, and the OU that names its grant) is revoked here.
RevocationCheck = Callable[[int | None, str | None], bool]
# The daemon's judgement of a hello that passed the listener's own checks: None to
# accept, else why not (said to the dialer and logged).
IdentityCheck = Callable[[dict[str, Any], PeerCertificate], str | None]


def certificate_mismatch(claimed: dict[str, Any], cert: PeerCertificate) -> str | None:
    """Why a checked hello does not match the certificate it came with, or None.

    A generated link's certificate names its link, not a site: the daemon's ``admit``
    binds it to the first site that links with it.
    """
    if cert.unit == GENERATED_LINK_UNIT:
        return None
    if cert.common_name is None:
        return "the link certificate names no single site (CN)"
    if claimed.get("siteName") != cert.common_name:
        return (f"the link hello names site {claimed.get('siteName')} but the "
                f"certificate was issued to site {printable(cert.common_name, 63)}")
    return None


class LinkListener:
    def __init__(
        self,
        role: str,
        local_hello: Callable[[], dict[str, Any]],
        on_incoming: IncomingHandler | None = None,
        on_stream: StreamHandler | None = None,
        is_revoked: RevocationCheck | None = None,
        admit: IdentityCheck | None = None,
    ) -> None:
        self.role = role
        self._is_revoked = is_revoked or (lambda _serial, _unit: False)
        self._admit = admit
        self._local_hello = local_hello
        self._on_incoming = on_incoming
        self._on_stream = on_stream
        self._server: asyncio.Server | None = None
        self._connections: set[LinkConnection] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        # Refusals and failed hellos are what a hostile client can repeat at will; a
        # client with a valid certificate can also come and go at will (until revoked).
        self._refusals = LogLimiter(log)
        self._comings_and_goings = LogLimiter(log, burst=50)
        self.port = 0

    @property
    def connections(self) -> set[LinkConnection]:
        return set(self._connections)

    async def start(self, sock: socket.socket, tls: ssl.SSLContext) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: LinkProtocol(self._connected), sock=sock, ssl=tls,
            ssl_handshake_timeout=HANDSHAKE_TIMEOUT_SECONDS,
        )
        self.port = int(sock.getsockname()[1])

    def _connected(self, protocol: LinkProtocol) -> None:
        """A dialer completed the TLS handshake: its hello and life run in one task."""
        task = asyncio.ensure_future(self._accept(protocol))
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    def _judge(self, cert: PeerCertificate, claimed: dict[str, Any]) -> str | None:
        if self._is_revoked(cert.serial, cert.unit):
            return REVOKED_MESSAGE  # the dialer reads this and stops redialing
        mismatch = certificate_mismatch(claimed, cert)
        if mismatch is not None:
            return mismatch
        return self._admit(claimed, cert) if self._admit is not None else None

    async def _accept(self, protocol: LinkProtocol) -> None:
        try:
            await self._serve(protocol)
        except asyncio.CancelledError:
            # Only stopping cancels this task, and nobody awaits it for the error: end
            # quietly, the connection with it.
            if protocol.transport is not None:
                protocol.transport.abort()

    async def _serve(self, protocol: LinkProtocol) -> None:
        assert protocol.transport is not None
        cert = peer_certificate(protocol.transport.get_extra_info("ssl_object"))
        # Now: it may be gone later.
        peer = printable(protocol.transport.get_extra_info("peername"))
        connection = LinkConnection(
            protocol, is_client=False, local_hello={**self._local_hello(), "role": self.role},
            on_stream=self._on_stream, admit=lambda claimed: self._judge(cert, claimed),
        )
        try:
            remote = await connection.start()
        except LinkRefused as exc:
            claimed = exc.claimed
            self._refusals.info(
                "%s link %s from %s refused (certificate serial %x, CN %s, site %s, id %s): %s",
                self.role, printable(claimed.get("link", "?")), peer, cert.serial or 0,
                printable(cert.common_name or "-", 63), printable(claimed.get("siteName", "?")),
                printable(claimed.get("siteId", "?")), printable(exc.reason, 300))
            if exc.reason == REVOKED_MESSAGE:
                connection.revoke()
            await connection.aclose(exc.reason)
            return
        except LinkClosed as exc:
            self._refusals.info("%s link from %s failed: %s", self.role, peer,
                                printable(exc.reason, 300))
            await connection.aclose(exc.reason)
            return
        connection.peer_unit = cert.unit
        connection.peer_certificate = cert
        described = (f"{self.role} link {remote['link']} from site {remote['siteName']} "
                     f"(certificate serial {cert.serial or 0:x})")
        self._comings_and_goings.info("%s accepted", described)
        self._connections.add(connection)
        if self._on_incoming:
            self._on_incoming(connection, cert.serial)
        try:
            reason = await connection.wait_closed()
            self._comings_and_goings.info("%s closed: %s", described, printable(reason, 300))
        finally:
            self._connections.discard(connection)
            if self._on_incoming:
                self._on_incoming(connection, None)
            await connection.aclose("the link listener closed")

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for connection in list(self._connections):
                connection.close("this site stopped accepting links")
            # Let every accepted link wind down here, so none is left for the event
            # loop's shutdown to cancel.
            handlers = list(self._handlers)
            if handlers:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(STOP_TIMEOUT_SECONDS):
                        await asyncio.gather(*handlers, return_exceptions=True)
            for task in handlers:
                task.cancel()
            await self._server.wait_closed()
            self._server = None
