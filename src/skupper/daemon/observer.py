"""The site's observer: Prometheus metrics, a JSON API and the live console, over HTTP.

One small aiohttp server per site, on loopback unless the site's ``metrics-host``
setting says otherwise:

- ``GET /metrics``: the Prometheus text format, without authentication, like every
  exporter (what it reveals is the site's own traffic; keep it on loopback or behind
  the scraper's network if that matters);
- ``GET /api/network``, ``GET /api/connections``: JSON, and ``GET /``: the console
  page. These need the site's console token, as ``?token=`` or ``Authorization:
  Bearer``; without it nothing about the network is served (401, empty body);
- ``GET /assets/*``: the console's own script and style sheet (no data in them).

The token is random, made once per namespace and kept 0600 beside the site's runtime
files, so the console's address stays valid across restarts; ``observer.json`` beside
it tells the CLI where the server listens.

The page is served with a strict Content-Security-Policy (its own script only, no
inline code) and ``Referrer-Policy: no-referrer`` so the token in its address never
leaves in a Referer header; the script writes every name it shows as text, never as
markup.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
import socket
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web

from skupper.base.files import write_private

log = logging.getLogger(__name__)

DEFAULT_PORT = 9464  # the first port tried; the one chosen is remembered
TOKEN_BYTES = 24
_ASSETS = {"console.js": "text/javascript", "console.css": "text/css"}
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "connect-src 'self'; img-src 'self'; base-uri 'none'; "
                               "form-action 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


def console_token(path: Path) -> str:
    """The namespace's console token: read it, or make it once (0600)."""
    try:
        token = path.read_text().strip()
        if len(token) >= 32:
            return token
    except OSError:
        pass
    token = secrets.token_urlsafe(TOKEN_BYTES)
    write_private(path, token + "\n")
    return token


class Observer:
    """Serves what ``metrics``, ``network`` and ``connections`` return, on one socket."""

    def __init__(self, token: str, metrics: Callable[[], bytes],
                 network: Callable[[], dict[str, Any]],
                 connections: Callable[[], list[dict[str, Any]]]) -> None:
        self._token = token
        self._metrics = metrics
        self._network = network
        self._connections = connections
        self._runner: web.AppRunner | None = None
        self.address: tuple[str, int] | None = None

    # -- HTTP ------------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        offered = request.query.get("token", "")
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            offered = header[len("Bearer "):].strip()
        return bool(offered) and hmac.compare_digest(offered.encode(), self._token.encode())

    def _guarded(self, handler: Callable[[web.Request], web.Response]) -> Any:
        async def guarded(request: web.Request) -> web.Response:
            if not self._authorized(request):
                return web.Response(status=401, headers={"WWW-Authenticate": "Bearer",
                                                         **_PAGE_HEADERS})
            return handler(request)
        return guarded

    def _json(self, doc: Any) -> web.Response:
        return web.Response(text=json.dumps(doc, separators=(",", ":")),
                            content_type="application/json", headers=_PAGE_HEADERS)

    def make_app(self) -> web.Application:
        async def metrics(_: web.Request) -> web.Response:
            return web.Response(body=self._metrics(),
                                headers={"Content-Type": "text/plain; version=0.0.4; "
                                                         "charset=utf-8"})

        async def asset(request: web.Request) -> web.Response:
            name = request.match_info["name"]
            if name not in _ASSETS:
                raise web.HTTPNotFound()
            body = resources.files("skupper.daemon.console").joinpath(name).read_bytes()
            return web.Response(body=body, content_type=_ASSETS[name], headers=_PAGE_HEADERS)

        def page(_: web.Request) -> web.Response:
            body = resources.files("skupper.daemon.console").joinpath("index.html").read_bytes()
            return web.Response(body=body, content_type="text/html", headers=_PAGE_HEADERS)

        app = web.Application(client_max_size=4096)
        app.router.add_get("/metrics", metrics)
        app.router.add_get("/assets/{name}", asset)
        app.router.add_get("/", self._guarded(page))
        app.router.add_get("/api/network", self._guarded(lambda _: self._json(self._network())))
        app.router.add_get("/api/connections", self._guarded(
            lambda _: self._json({"connections": self._connections()})))
        return app

    # -- lifecycle -------------------------------------------------------------------

    async def start(self, sock: socket.socket) -> None:
        self._runner = web.AppRunner(self.make_app(), access_log=None, handle_signals=False,
                                     max_line_size=4096, max_field_size=4096,
                                     keepalive_timeout=30)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        host, port = sock.getsockname()[:2]
        self.address = (str(host), int(port))
        log.info("observer (metrics, console) on http://%s/", _host_port(*self.address))

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.address = None

    def describe(self, path: Path) -> None:
        """Tell the CLI where we listen: ``observer.json`` (0600, it holds the token)."""
        if self.address is None:
            return
        host, port = self.address
        base = f"http://{_host_port(host, port)}"
        write_private(path, json.dumps({"metrics": f"{base}/metrics",
                                        "console": f"{base}/?token={self._token}",
                                        "api": f"{base}/api", "token": self._token}))


def _host_port(host: str, port: int) -> str:
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
