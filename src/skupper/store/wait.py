"""Waiting for a resource to reach a state, driven by the store's watch (no 1 s polls)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from skupper.resources import Resource
from skupper.store.interface import NotFound, Store


class WaitTimeout(Exception):
    """The resource did not reach the state in time; ``last`` is what it looked like."""

    def __init__(self, last: Resource | None) -> None:
        super().__init__("timed out")
        self.last = last


async def wait_for(
    store: Store,
    kind: str,
    name: str,
    done: Callable[[Resource], bool],
    timeout: float,
    *,
    since: int | None = None,
) -> Resource:
    """Return the resource once ``done(resource)``; WaitTimeout after ``timeout`` seconds.

    With ``since`` (a store version), only changes made after it count, so a state left
    over from an earlier run of the daemon is not taken for a fresh one.
    NotFound is raised if the resource is deleted while waiting.
    """
    last: Resource | None = None

    async def watch() -> Resource:
        nonlocal last
        start = since if since is not None else await store.current_version()
        if since is None:
            last = await store.get(kind, name)
            if done(last):
                return last
        async for event in store.watch(kind, since=start):
            if event.resource["metadata"]["name"] != name:
                continue
            if event.type == "DELETED":
                raise NotFound(kind, name)
            last = event.resource
            if done(last):
                return last
        raise NotFound(kind, name)

    try:
        return await asyncio.wait_for(watch(), timeout)
    except TimeoutError:
        raise WaitTimeout(last) from None
