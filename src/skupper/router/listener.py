"""The link listener: mutual TLS 1.3, accepting only certificates from the site's CA.

The TLS context (built by the daemon) requires a client certificate signed by the
site CA, so a peer with any other certificate, or none, never completes the
handshake. An accepted connection runs the link hello, then carries streams.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any

from skupper.certs.tls import peer_identity
from skupper.router.link import REVOKED_MESSAGE, LinkClosed, LinkConnection, StreamHandler

log = logging.getLogger(__name__)

# A peer that has not finished its TLS handshake by then is dropped.
HANDSHAKE_TIMEOUT_SECONDS = 10.0

# Called with the connection and its peer's certificate serial once the hello is done,
# and with the same connection and None once it has closed.
IncomingHandler = Callable[[LinkConnection, int | None], None]
# Whether a certificate (its serial, and the OU that names its grant) is revoked here.
RevocationCheck = Callable[[int | None, str | None], bool]


class LinkListener:
    def __init__(
        self,
        role: str,
        local_hello: Callable[[], dict[str, Any]],
        on_incoming: IncomingHandler | None = None,
        on_stream: StreamHandler | None = None,
        is_revoked: RevocationCheck | None = None,
    ) -> None:
        self.role = role
        self._is_revoked = is_revoked or (lambda _serial, _unit: False)
        self._local_hello = local_hello
        self._on_incoming = on_incoming
        self._on_stream = on_stream
        self._server: asyncio.Server | None = None
        self._connections: set[LinkConnection] = set()
        self.port = 0

    @property
    def connections(self) -> set[LinkConnection]:
        return set(self._connections)

    async def start(self, sock: socket.socket, tls: ssl.SSLContext) -> None:
        self._server = await asyncio.start_server(
            self._accept, sock=sock, ssl=tls, ssl_handshake_timeout=HANDSHAKE_TIMEOUT_SECONDS,
        )
        self.port = int(sock.getsockname()[1])

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ssl_object = writer.get_extra_info("ssl_object")
        serial, unit = peer_identity(ssl_object)
        peer = writer.get_extra_info("peername")  # now: the transport may be gone later
        revoked = self._is_revoked(serial, unit)
        hello = {**self._local_hello(), "role": self.role}
        if revoked:
            hello["error"] = REVOKED_MESSAGE  # the dialer reads this and stops redialing
        connection = LinkConnection(
            reader, writer, is_client=False, local_hello=hello, on_stream=self._on_stream,
        )
        try:
            remote = await connection.start()
        except LinkClosed as exc:
            log.info("%s link from %s failed: %s", self.role, peer, exc.reason)
            await connection.aclose(exc.reason)
            return
        if revoked:
            log.info("%s link %s from site %s refused: certificate %x is revoked", self.role,
                     remote.get("link"), remote.get("siteName"), serial or 0)
            connection.revoke()
            await connection.aclose(REVOKED_MESSAGE)
            return
        log.info("%s link %s from site %s accepted (certificate serial %x)", self.role,
                 remote.get("link"), remote.get("siteName"), serial or 0)
        self._connections.add(connection)
        connection.peer_unit = unit
        if self._on_incoming:
            self._on_incoming(connection, serial)
        try:
            reason = await connection.wait_closed()
            log.info("%s link %s from site %s closed: %s", self.role, remote.get("link"),
                     remote.get("siteName"), reason)
        finally:
            self._connections.discard(connection)
            await connection.aclose("the link listener closed")
            if self._on_incoming:
                self._on_incoming(connection, None)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for connection in list(self._connections):
                connection.close("this site stopped accepting links")
            await self._server.wait_closed()
            self._server = None
