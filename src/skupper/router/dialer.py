"""Dialing one Link: connect, hello, stay up, and redial with backoff when it drops.

One dialer per Link and one connection per dialer, so a link never duplicates.
Every change is reported as a LinkReport for whoever keeps the Link's status.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from skupper.base.backoff import backoff_delay
from skupper.base.text import printable
from skupper.router.link import REVOKED_MESSAGE, LinkClosed, LinkConnection, StreamHandler
from skupper.router.link_transport import dial_tls

log = logging.getLogger(__name__)

# Connect and TLS handshake. Short, because a connect started while the remote was
# unreachable waits for the kernel's next SYN retry (1, 3, 7 s after the first): giving
# up at 4 s and redialing (backoff capped at 2 s) puts a new SYN on a healed wire
# within ~3 s, where 10 s could leave it waiting ~5 s. A TLS 1.3 handshake is two round
# trips, well inside 4 s even across a WAN.
CONNECT_TIMEOUT_SECONDS = 4.0
# A link that stayed up this long starts its next backoff from the beginning.
STABLE_AFTER_SECONDS = 10.0


@dataclass(frozen=True)
class LinkReport:
    operational: bool
    message: str
    remote: dict[str, Any] = field(default_factory=dict)
    # True when retrying cannot help (e.g. the credentials were revoked).
    final: bool = False


@dataclass(frozen=True)
class DialTarget:
    host: str
    port: int
    tls: ssl.SSLContext


class Dialer:
    def __init__(
        self,
        name: str,
        target: DialTarget,
        local_hello: dict[str, Any],
        report: Callable[[str, LinkReport], None],
        on_stream: StreamHandler | None = None,
        on_connection: Callable[[str, LinkConnection | None], None] | None = None,
        check_remote: Callable[[dict[str, Any]], str | None] | None = None,
    ) -> None:
        self.name = name
        self.target = target
        self._hello = {**local_hello, "link": name}
        self._report = report
        self._on_stream = on_stream
        self._on_connection = on_connection
        # Whether the remote's (checked) hello is acceptable here: None, or why not.
        self._check_remote = check_remote
        self.connection: LinkConnection | None = None

    async def run(self) -> None:
        attempt = 0
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            outcome = await self._connect_once()
            if outcome.final:
                self._report(self.name, outcome)
                return
            if loop.time() - started > STABLE_AFTER_SECONDS:
                attempt = 0
            delay = backoff_delay(attempt)
            attempt += 1
            self._report(self.name, LinkReport(False, outcome.message))
            await asyncio.sleep(delay)

    async def _connect_once(self) -> LinkReport:
        where = f"{self.target.host}:{self.target.port}"
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                protocol = await dial_tls(self.target.host, self.target.port,
                                          self.target.tls)
        except ssl.SSLCertVerificationError as exc:
            return LinkReport(False, f"the certificate of {where} does not match the link's CA "
                                     f"({exc.verify_message})")
        except ssl.SSLError as exc:
            return LinkReport(False, f"TLS with {where} failed: {exc.reason or exc}")
        except TimeoutError:
            return LinkReport(False, f"no answer from {where} within "
                                     f"{CONNECT_TIMEOUT_SECONDS:g} s")
        except ConnectionRefusedError:
            return LinkReport(False, f"cannot connect to {where}: connection refused "
                                     "(is the remote site running?)")
        except OSError as exc:
            return LinkReport(False, f"cannot connect to {where}: {exc.strerror or exc}")
        connection = LinkConnection(protocol, is_client=True, local_hello=self._hello,
                                    on_stream=self._on_stream)
        try:
            remote = await connection.start()
        except LinkClosed as exc:
            await connection.aclose(exc.reason)
            return LinkReport(False, exc.reason, final=_is_final(exc.reason))
        refusal = self._check_remote(remote) if self._check_remote is not None else None
        if refusal is not None:
            await connection.aclose(refusal)
            return LinkReport(False, refusal)
        self.connection = connection
        if self._on_connection:
            self._on_connection(self.name, connection)
        self._report(self.name, LinkReport(True, "OK", remote))
        log.info("link %s to %s (%s) is operational", self.name, remote.get("siteName"), where)
        try:
            reason = await connection.wait_closed()
        except asyncio.CancelledError:
            await connection.aclose("the link was deleted")
            raise
        finally:
            self.connection = None
            if self._on_connection:
                self._on_connection(self.name, None)
        await connection.aclose(reason)
        log.info("link %s is down: %s", self.name, printable(reason, 300))
        return LinkReport(False, reason, final=_is_final(reason))


def _is_final(reason: str) -> bool:
    return reason == REVOKED_MESSAGE
