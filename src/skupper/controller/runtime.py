"""What the controller needs from the process it runs in: listeners and a grant server."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from skupper.certs.issue import KeyPair


@dataclass(frozen=True)
class LinkAccessConfig:
    host: str
    site_ca: KeyPair
    router_server: KeyPair
    grant_server_ca: KeyPair
    grant_server: KeyPair
    # How long the client certificates issued at redemption are valid, in seconds.
    link_certificate_validity: float


@dataclass(frozen=True)
class LinkAccessState:
    endpoints: list[dict[str, Any]] = field(default_factory=list)
    # https://host:port/ : a grant's URL is this plus its uid.
    grant_url_base: str = ""
    grant_ca_pem: bytes = b""


class LinkAccessRuntime(Protocol):
    async def enable(self, config: LinkAccessConfig) -> LinkAccessState:
        """Listen for links and redemptions (idempotent for an unchanged config)."""
        ...

    async def disable(self) -> None: ...

    @property
    def state(self) -> LinkAccessState | None: ...


class LinkRuntime(Protocol):
    async def ensure_link(self, link: Any, credentials: dict[str, bytes]) -> None:
        """Dial this Link (idempotent; redials when its endpoint or credentials change)."""
        ...

    async def remove_link(self, name: str) -> None: ...
