"""The link listener: mutual TLS 1.3, accepting only certificates from the site's CA.

The TLS context (built by the daemon) requires a client certificate signed by the
site CA, so a peer with any other certificate, or none, never completes the handshake.
Until the link protocol lands, an accepted connection is held open and idle.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl

from skupper.certs.tls import peer_certificate_serial

log = logging.getLogger(__name__)

# A peer that has not finished its TLS handshake by then is dropped.
HANDSHAKE_TIMEOUT_SECONDS = 10.0


class LinkListener:
    def __init__(self, role: str) -> None:
        self.role = role
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def start(self, sock: socket.socket, tls: ssl.SSLContext) -> None:
        self._server = await asyncio.start_server(
            self._accept,
            sock=sock,
            ssl=tls,
            ssl_handshake_timeout=HANDSHAKE_TIMEOUT_SECONDS,
        )
        self.port = int(sock.getsockname()[1])

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ssl_object = writer.get_extra_info("ssl_object")
        serial = peer_certificate_serial(ssl_object) if ssl_object else None
        peer = writer.get_extra_info("peername")
        log.info("%s link accepted from %s (certificate serial %x)", self.role, peer, serial or 0)
        self._connections.add(writer)
        try:
            while await reader.read(65536):
                pass
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            self._connections.discard(writer)
            writer.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._connections):
                writer.close()
            await self._server.wait_closed()
            self._server = None
