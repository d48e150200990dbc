"""The Store protocol, its events and its errors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Literal, NamedTuple, Protocol, TypeVar

from skupper.resources import Resource

T = TypeVar("T")

EventType = Literal["ADDED", "MODIFIED", "DELETED"]


class StoreError(Exception):
    """Base of the store's errors."""


class NotFound(StoreError):
    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f'{kind} "{name}" not found')
        self.kind = kind
        self.name = name


class AlreadyExists(StoreError):
    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f'{kind} "{name}" already exists')
        self.kind = kind
        self.name = name


class Conflict(StoreError):
    """The resourceVersion given is no longer the current one: re-read and retry."""


class WatchEvent(NamedTuple):  # not a dataclass: no inspect import for short commands
    type: EventType
    resource: Resource
    # The store-wide version after this event; resume a watch from here.
    version: int


class Store(Protocol):
    """Resources of one namespace, with optimistic concurrency and watches.

    Semantics follow the Kubernetes API so both backends behave alike:
    ``create`` sets uid, resourceVersion, generation 1 and creationTimestamp;
    ``update`` replaces metadata labels/annotations and spec, bumps generation when the
    spec changes, and raises Conflict when ``metadata.resourceVersion`` is stale;
    ``update_status`` replaces only status, with the same optimistic check.
    """

    async def get(self, kind: str, name: str) -> Resource: ...

    async def list(self, kind: str) -> list[Resource]: ...

    async def create(self, resource: Resource) -> Resource: ...

    async def update(self, resource: Resource) -> Resource: ...

    async def update_status(self, resource: Resource) -> Resource: ...

    async def delete(self, kind: str, name: str) -> None: ...

    async def mutate_status(
        self, kind: str, name: str, change: Callable[[Resource], T]
    ) -> T:
        """Read, apply ``change`` (which edits status in place), write: all or nothing.

        ``change`` may raise to abort; nothing is written then. The SQLite backend runs it
        inside one exclusive, durable transaction; the Kubernetes backend retries it on
        Conflict, so ``change`` must be safe to call more than once.
        """
        ...

    async def current_version(self) -> int: ...

    def watch(self, kind: str | None = None, since: int = 0) -> AsyncIterator[WatchEvent]:
        """Events for ``kind`` (all kinds when None) after store version ``since``."""
        ...

    def close(self) -> None: ...


class SecretStore(Protocol):
    """Named secrets of one namespace, each a map of key (``tls.crt``...) to bytes.

    Locally a secret is a 0700 folder of 0600 files; on Kubernetes, a Secret.
    ``get`` raises NotFound("Secret", name).
    """

    async def get(self, name: str) -> dict[str, bytes]: ...

    async def exists(self, name: str) -> bool: ...

    async def put(self, name: str, data: dict[str, bytes]) -> None: ...

    async def delete(self, name: str) -> None: ...

    async def names(self) -> list[str]: ...
