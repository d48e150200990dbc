"""The daemon's link access: router listeners and the grant server on exact ports.

Ports are chosen once (the first free at or above 55671, 45671 and 9090) and
remembered, so tokens and links issued before a restart keep pointing at this site.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from collections import Counter
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from skupper.base.files import write_private
from skupper.base.net import (
    bind_address_for,
    bind_first_free,
    is_ip_literal,
    is_local_address,
    is_wildcard,
)
from skupper.base.text import printable
from skupper.certs.issue import issue_certificate
from skupper.certs.tls import server_context
from skupper.controller.runtime import LinkAccessConfig, LinkAccessState
from skupper.daemon.links import LinkManager
from skupper.grants.redemption import Credential, grant_unit
from skupper.grants.server import GrantServer, GrantServerContext
from skupper.router.listener import LinkListener
from skupper.store.interface import Store

log = logging.getLogger(__name__)

ROUTER_ROLES = {"inter-router": 55671, "edge": 45671}
GRANT_SERVER_PORT = 9090
ENDPOINT_GROUP = "skupper-router"


class DaemonLinkAccess:
    def __init__(self, store: Store, ports_file: Path, links: LinkManager) -> None:
        self._store = store
        self._links = links
        self._ports_file = ports_file
        self._config: LinkAccessConfig | None = None
        self._state: LinkAccessState | None = None
        self._listeners: list[LinkListener] = []
        self._grant_server: GrantServer | None = None
        self._validity = timedelta(days=5 * 365)
        # Redemption attempts by outcome, across grant server restarts (for the metrics).
        self.redemptions: Counter[str] = Counter()

    @property
    def state(self) -> LinkAccessState | None:
        return self._state

    def _remembered_ports(self) -> dict[str, int]:
        try:
            data = json.loads(self._ports_file.read_text())
            return {str(k): int(v) for k, v in data.items()}
        except (OSError, ValueError, AttributeError):
            return {}

    def _bind(self, host: str, role: str, start: int, remembered: dict[str, int]) -> socket.socket:
        preferred = [remembered[role]] if role in remembered else []
        sock = bind_first_free(host, preferred, start)
        if preferred and sock.getsockname()[1] != preferred[0]:
            log.warning("port %d for %s is taken; now on %d: tokens and links issued "
                        "before point at the old port", preferred[0], role, sock.getsockname()[1])
        return sock

    async def enable(self, config: LinkAccessConfig) -> LinkAccessState:
        # A new certificate validity needs no new sockets: links stay up.
        self._validity = timedelta(seconds=config.link_certificate_validity)
        if self._config is not None and self._state is not None and replace(
            config, link_certificate_validity=self._config.link_certificate_validity
        ) == self._config:
            self._config = config
            return self._state
        await self.disable()
        override = os.environ.get("SKUPPER_BIND_HOST")
        bind_host = bind_address_for(config.host, override)
        if override and not is_wildcard(override) and is_ip_literal(override) \
                and not is_local_address(override):
            raise OSError(f"cannot listen on SKUPPER_BIND_HOST={printable(override)}: it is "
                          "not an address of this host. Set it to one, or unset it")
        remembered = self._remembered_ports()
        sockets: dict[str, socket.socket] = {}
        try:
            for role, start in ROUTER_ROLES.items():
                sockets[role] = self._bind(bind_host, role, start, remembered)
            sockets["grant-server"] = self._bind(
                bind_host, "grant-server", GRANT_SERVER_PORT, remembered
            )
        except OSError as exc:
            for sock in sockets.values():
                sock.close()
            if os.environ.get("SKUPPER_BIND_HOST"):
                raise OSError(f"cannot listen on SKUPPER_BIND_HOST={printable(bind_host)}: "
                              f"{exc.strerror or exc}. Set it to an address of this host, "
                              "or unset it") from exc
            raise
        ports = {role: int(sock.getsockname()[1]) for role, sock in sockets.items()}
        write_private(self._ports_file, json.dumps(ports))

        link_tls = server_context(
            config.router_server.cert_pem, config.router_server.key_pem,
            client_ca_pem=config.site_ca.cert_pem,
        )
        for role in ROUTER_ROLES:
            listener = LinkListener(role, self._links.local_hello, self._links.on_incoming,
                                    is_revoked=self._links.is_revoked,
                                    admit=self._links.admit)
            await listener.start(sockets[role], link_tls)
            self._listeners.append(listener)

        endpoints: list[dict[str, Any]] = [
            {"name": role, "host": config.host, "port": str(ports[role]),
             "group": ENDPOINT_GROUP}
            for role in ROUTER_ROLES
        ]
        site_ca = config.site_ca
        self._grant_server = GrantServer(
            GrantServerContext(
                store=self._store,
                issue=self._issue,
                site_ca_pem=lambda: site_ca.cert_pem,
                endpoints=lambda: endpoints,
                outcomes=self.redemptions,
            )
        )
        await self._grant_server.start(
            sockets["grant-server"],
            server_context(config.grant_server.cert_pem, config.grant_server.key_pem),
        )
        host = f"[{config.host}]" if ":" in config.host else config.host
        self._state = LinkAccessState(
            endpoints=endpoints,
            grant_url_base=f"https://{host}:{ports['grant-server']}/",
            grant_ca_pem=config.grant_server_ca.cert_pem,
        )
        self._config = config
        log.info("link access on %s: %s", bind_host, ports)
        return self._state

    def _issue(self, subject: str, grant_id: str) -> Credential:
        """A link certificate for a redemption: signed by the site CA, naming its grant."""
        assert self._config is not None
        pair = issue_certificate(self._config.site_ca, subject, usage="client",
                                 validity=self._validity,
                                 organizational_unit=grant_unit(grant_id))
        return Credential(cert_pem=pair.cert_pem, key_pem=pair.key_pem, serial=pair.serial)

    async def disable(self) -> None:
        if self._grant_server is not None:
            await self._grant_server.stop()
            self._grant_server = None
        for listener in self._listeners:
            with contextlib.suppress(Exception):
                await listener.stop()
        self._listeners = []
        self._state = None
        self._config = None



