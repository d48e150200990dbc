"""The grant server: upstream's redemption protocol over HTTPS (TLS 1.3), with limits.

POST /<grant id>, the raw code as the body, headers ``name`` and ``subject``; the
answer is a multi-document YAML of one Secret and the Links. Refusals are plain text
with upstream's wording, so upstream redeemers show them unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from skupper.grants.redemption import (
    Credential,
    RedemptionRequest,
    Refusal,
    answer_documents,
    redeem,
    refund,
)
from skupper.store.interface import Store

log = logging.getLogger(__name__)

# A code is 24 bytes; 4 KiB leaves room for any upstream variant and no room for abuse.
MAX_BODY_BYTES = 4096
# Request line and each header: a redeemer sends a few short headers.
MAX_LINE_BYTES = 4096
MAX_FIELD_BYTES = 4096
MAX_HEADERS = 32
# A redemption takes milliseconds; a connection that has not finished its TLS handshake
# or its whole exchange by these deadlines is a slow-loris, and is cut.
HANDSHAKE_TIMEOUT_SECONDS = 5.0
CONNECTION_DEADLINE_SECONDS = 10.0


@dataclass
class GrantServerContext:
    store: Store
    issue: Callable[[str, str], Credential]
    site_ca_pem: Callable[[], bytes]
    endpoints: Callable[[], list[dict[str, Any]]]


def _text(status: int, reason: str) -> web.Response:
    return web.Response(status=status, text=reason + "\n", content_type="text/plain")


def make_app(ctx: GrantServerContext) -> web.Application:
    import yaml

    async def handle(request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            return _text(405, "Only POST is supported")
        grant_id = request.path.strip("/")
        if not grant_id or "/" in grant_id:
            return _text(404, "No such claim")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _text(413, "Request body too large")
        remote = request.remote or ""
        attempt = RedemptionRequest(
            grant_id=grant_id,
            code=body.strip(),
            name=request.headers.get("name", ""),
            subject=request.headers.get("subject", ""),
            remote=remote,
        )
        try:
            credential = await redeem(ctx.store, attempt, ctx.issue)
        except Refusal as refusal:
            log.info(
                "redemption refused: grant=%s remote=%s status=%d reason=%s",
                grant_id, remote, refusal.status, refusal.reason,
            )
            return _text(refusal.status, refusal.reason)
        except Exception:
            log.exception("redemption failed: grant=%s remote=%s", grant_id, remote)
            return _text(503, "Internal error")
        documents = answer_documents(
            attempt.name, credential, ctx.site_ca_pem(), ctx.endpoints()
        )
        text = "".join("---\n" + yaml.dump(doc, Dumper=_DUMPER, sort_keys=False)
                       for doc in documents)
        response = web.Response(status=200, text=text, content_type="application/yaml")
        try:
            if request.transport is None or request.transport.is_closing():
                raise ConnectionResetError("the client left before its answer")
            await response.prepare(request)
            await response.write_eof()
        except (ConnectionError, OSError) as exc:
            log.info("redemption not delivered, refunding it: grant=%s remote=%s (%s)",
                     grant_id, remote, exc)
            await refund(ctx.store, grant_id, credential.serial)
            if request.transport is not None:
                request.transport.abort()
            return response
        log.info(
            "redeemed: grant=%s remote=%s name=%s subject=%s serial=%x",
            grant_id, remote, attempt.name, attempt.subject, credential.serial,
        )
        return response

    # libyaml's emitter is 7x faster than PyYAML's Python one, the same bytes out.
    _DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.router.add_route("*", "/{tail:.*}", handle, expect_handler=_expect)
    return app


async def _expect(request: web.Request) -> web.Response | None:
    """aiohttp's own handler echoes the header into an error it cannot encode (500)."""
    if request.headers.get("Expect", "").lower() == "100-continue":
        if request.version >= (1, 1):
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return None
    return _text(417, "Only 'Expect: 100-continue' is supported")


class GrantServer:
    """Runs the app on a socket the caller bound (so the port choice is exact)."""

    def __init__(self, ctx: GrantServerContext) -> None:
        self._ctx = ctx
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self, sock: socket.socket, tls: ssl.SSLContext) -> None:
        self._runner = web.AppRunner(
            make_app(self._ctx),
            access_log=None,
            handle_signals=False,
            max_line_size=MAX_LINE_BYTES,
            max_field_size=MAX_FIELD_BYTES,
            max_headers=MAX_HEADERS,
            keepalive_timeout=CONNECTION_DEADLINE_SECONDS,
        )
        await self._runner.setup()
        handler_factory = self._runner.server
        assert handler_factory is not None
        loop = asyncio.get_running_loop()
        # aiohttp has no deadline for reading a request, so every connection gets one.
        self._server = await loop.create_server(
            lambda: _Deadline(handler_factory(), loop, CONNECTION_DEADLINE_SECONDS),
            sock=sock, ssl=tls, ssl_handshake_timeout=HANDSHAKE_TIMEOUT_SECONDS,
        )
        self.port = int(sock.getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._runner is not None:
            await self._runner.shutdown()
            await self._runner.cleanup()
            self._runner = None


class _Deadline(asyncio.Protocol):
    """Wraps aiohttp's per-connection handler and closes the connection at a deadline."""

    def __init__(self, inner: Any, loop: asyncio.AbstractEventLoop, seconds: float) -> None:
        self._inner = inner
        self._loop = loop
        self._seconds = seconds
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._timer = self._loop.call_later(self._seconds, transport.abort)  # type: ignore[attr-defined]
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        result: bool | None = self._inner.eof_received()
        return result

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()
