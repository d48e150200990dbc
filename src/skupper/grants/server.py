"""The grant server: upstream's redemption protocol over HTTPS (TLS 1.3), with limits.

POST /<grant id>, the raw code as the body, headers ``name`` and ``subject``; the
answer is a multi-document YAML of one Secret and the Links. Refusals are plain text
with upstream's wording, so upstream redeemers show them unchanged.
"""

from __future__ import annotations

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
)
from skupper.store.interface import Store

log = logging.getLogger(__name__)

# A code is 24 bytes; 4 KiB leaves room for any upstream variant and no room for abuse.
MAX_BODY_BYTES = 4096
# Request line and each header: a redeemer sends a few short headers.
MAX_LINE_BYTES = 4096
MAX_FIELD_BYTES = 4096


@dataclass
class GrantServerContext:
    store: Store
    issue: Callable[[str], Credential]
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
        log.info(
            "redeemed: grant=%s remote=%s name=%s subject=%s serial=%x",
            grant_id, remote, attempt.name, attempt.subject, credential.serial,
        )
        text = "".join("---\n" + yaml.dump(doc, Dumper=_DUMPER, sort_keys=False)
                       for doc in documents)
        return web.Response(status=200, text=text, content_type="application/yaml")

    # libyaml's emitter is 7x faster than PyYAML's Python one, the same bytes out.
    _DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


class GrantServer:
    """Runs the app on a socket the caller bound (so the port choice is exact)."""

    def __init__(self, ctx: GrantServerContext) -> None:
        self._ctx = ctx
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self, sock: socket.socket, tls: ssl.SSLContext) -> None:
        self._runner = web.AppRunner(
            make_app(self._ctx),
            access_log=None,
            handle_signals=False,
            max_line_size=MAX_LINE_BYTES,
            max_field_size=MAX_FIELD_BYTES,
        )
        await self._runner.setup()
        site = web.SockSite(self._runner, sock, ssl_context=tls)
        await site.start()
        self.port = int(sock.getsockname()[1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
