"""The grant server: upstream's redemption protocol over HTTPS (TLS 1.3), with limits.

POST /<grant id>, the raw code as the body, headers ``name`` and ``subject``; the
answer is a multi-document YAML of one Secret and the Links. Refusals are plain text
with upstream's wording, so upstream redeemers show them unchanged.

Everything a request carries is untrusted: it is bounded before use and escaped
(``printable``) before it reaches the log, and a request aiohttp cannot even parse
costs one short log line, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from skupper.base.text import printable
from skupper.grants.limits import WrongCodeLimits
from skupper.grants.redemption import (
    Credential,
    RedemptionRequest,
    Refusal,
    answer_documents,
    redeem,
    refund,
    used_up,
    write_unrecorded,
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
LINGERING_SECONDS = 1.0
# A grant id is a UUID (36 characters); anything much longer is not one.
MAX_GRANT_ID_CHARS = 64
# How often counts of attempts answered 429 are written onto their grants.
UNRECORDED_WRITE_SECONDS = 1.0


@dataclass
class GrantServerContext:
    store: Store
    issue: Callable[[str, str], Credential]
    site_ca_pem: Callable[[], bytes]
    endpoints: Callable[[], list[dict[str, Any]]]
    limits: WrongCodeLimits = field(default_factory=WrongCodeLimits)
    # Attempts by outcome (the site's skupper_grant_redemptions_total).
    outcomes: Counter[str] = field(default_factory=Counter)


def outcome_of(refusal: Refusal) -> str:
    """The metrics' name for a refusal: what happened, in a word or two."""
    if refusal.status == 404:
        if refusal.reason == used_up().reason:
            return "used-up"
        return "expired" if refusal.reason.startswith("No such claim: ") else "unknown"
    return {403: "wrong-code", 429: "rate-limited"}.get(refusal.status, "bad-request")


def _text(status: int, reason: str, retry_after: int | None = None) -> web.Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return web.Response(status=status, text=reason + "\n", content_type="text/plain",
                        headers=headers)


def make_app(ctx: GrantServerContext) -> web.Application:
    import yaml

    async def handle(request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            return _text(405, "Only POST is supported")
        grant_id = request.path.strip("/")
        if not grant_id or "/" in grant_id or len(grant_id) > MAX_GRANT_ID_CHARS:
            return _text(404, "No such claim")
        # aiohttp refuses a Content-Length it cannot parse; one it can may still be huge.
        # The body is never read, so the connection cannot serve another request.
        if (request.content_length or 0) > MAX_BODY_BYTES:
            response = _text(413, "Request body too large")
            response.force_close()
            return response
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
        # What the log shows of the request: escaped, bounded, never the code.
        where = f"grant={printable(grant_id, MAX_GRANT_ID_CHARS)} remote={printable(remote, 64)}"
        try:
            credential = await redeem(ctx.store, attempt, ctx.issue, limits=ctx.limits)
        except Refusal as refusal:
            ctx.outcomes[outcome_of(refusal)] += 1
            # 429s are counted on the grant (rateLimited); one line each would let a
            # flood write the log as fast as it is answered.
            log.log(logging.DEBUG if refusal.status == 429 else logging.INFO,
                    "redemption refused: %s status=%d reason=%s",
                    where, refusal.status, refusal.reason)
            return _text(refusal.status, refusal.reason, refusal.retry_after)
        except Exception as exc:
            ctx.outcomes["error"] += 1
            log.error("redemption failed: %s (%s)", where, _short(exc))
            log.debug("redemption failure in full", exc_info=True)
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
            ctx.outcomes["not-delivered"] += 1
            log.info("redemption not delivered, refunding it: %s (%s)", where, _short(exc))
            await refund(ctx.store, grant_id, credential.serial)
            if request.transport is not None:
                request.transport.abort()
            return response
        ctx.outcomes["redeemed"] += 1
        # name and subject passed check_request (DNS-1123 or a UUID); escaped all the same.
        log.info(
            "redeemed: %s name=%s subject=%s serial=%x",
            where, printable(attempt.name), printable(attempt.subject), credential.serial,
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
        self._writer: asyncio.Task[None] | None = None
        self.port = 0

    async def start(self, sock: socket.socket, tls: ssl.SSLContext) -> None:
        quiet_protocol_errors()
        self._runner = web.AppRunner(
            make_app(self._ctx),
            access_log=None,
            handle_signals=False,
            max_line_size=MAX_LINE_BYTES,
            max_field_size=MAX_FIELD_BYTES,
            max_headers=MAX_HEADERS,
            keepalive_timeout=CONNECTION_DEADLINE_SECONDS,
            # After a refusal with the body unread, aiohttp reads on for this long so the
            # client sees the answer, not a reset; a client that claims a huge body is
            # not worth aiohttp's default 10 s.
            lingering_time=LINGERING_SECONDS,
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
        self._writer = asyncio.create_task(self._write_unrecorded_counts())

    async def _write_unrecorded_counts(self) -> None:
        while True:
            await asyncio.sleep(UNRECORDED_WRITE_SECONDS)
            try:
                await write_unrecorded(self._ctx.store, self._ctx.limits)
            except Exception as exc:  # the store is closing or broken: try again later
                log.warning("cannot write wrong-code counts onto grants: %s", _short(exc))

    async def stop(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
            with contextlib.suppress(Exception):  # best effort: the counts are not vital
                await write_unrecorded(self._ctx.store, self._ctx.limits)
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


def _short(exc: BaseException) -> str:
    """An exception as one short, escaped line: its type and the start of its message.

    Only the first paragraph: aiohttp's parse errors go on to quote the raw request,
    which may hold a code in its body.
    """
    text = " ".join(str(exc).split("\n\n", 1)[0].split())
    return printable(f"{type(exc).__name__}: {text}" if text else type(exc).__name__, 160)


class _OneLine(logging.Filter):
    """Turns a traceback that a client can cause into one short, escaped line.

    aiohttp logs every request it cannot parse with a traceback (at ERROR), and asyncio
    may log TLS and connection failures the same way: one garbage request would cost
    dozens of log lines. The record keeps its logger; its level drops to INFO for what a
    client caused, and its message becomes the message and the exception's first words.
    """

    # Exceptions a peer can cause by what it sends or by hanging up.
    _PEER_CAUSED: tuple[type[BaseException], ...] = (OSError, ssl.SSLError, TimeoutError,
                                                     asyncio.IncompleteReadError)

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.exc_info or record.exc_info[1] is None:
            return True
        exc = record.exc_info[1]
        if record.name == "asyncio" and not isinstance(exc, self._PEER_CAUSED):
            return True  # a bug in this process: keep the traceback
        if type(exc).__module__ == "aiohttp.http_exceptions":
            # A request aiohttp could not parse: its message quotes the request's bytes
            # (a code, perhaps), so only the peer and the kind of error are kept.
            remote = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.msg = (f"malformed HTTP request from {printable(remote, 64)} refused: "
                          f"{type(exc).__name__} (HTTP {getattr(exc, 'code', 400)})")
        else:
            record.msg = f"{printable(record.getMessage(), 160)}: {_short(exc)}"
        record.args = ()
        record.exc_info = None
        record.exc_text = None
        if record.levelno > logging.INFO:
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


_ONE_LINE = _OneLine()


def quiet_protocol_errors() -> None:
    """Install the filter on aiohttp's server logger and asyncio's (once per process)."""
    for name in ("aiohttp.server", "asyncio"):
        logger = logging.getLogger(name)
        if _ONE_LINE not in logger.filters:
            logger.addFilter(_ONE_LINE)
