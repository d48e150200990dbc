"""What most commands do first: find the platform, the store and the site; wait well."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from skupper.cli.options import Target
from skupper.cli.session_checks import (
    LIVENESS_INTERVAL,
    daemon_gone,
    daemon_not_running_error,
    daemon_stopped_error,
    done_or_failed,
    no_site_error,
    require_running,
    require_site,
    wait_failed_error,
    wait_timed_out_error,
)
from skupper.resources import Resource

if TYPE_CHECKING:
    from skupper.platforms.kubernetes import KubernetesPlatform
    from skupper.platforms.local_platform import LocalPlatform
    from skupper.store.interface import Store

# Callers import these from here as well as from session_checks.
__all__ = ["Session", "daemon_not_running_error", "no_site_error", "open_session",
           "require_running", "require_site", "wait_until"]


@dataclass
class Session:
    platform: LocalPlatform | KubernetesPlatform
    store: Store
    site: Resource | None


@contextlib.asynccontextmanager
async def open_session(
    target: Target, *, create: bool = False,
    platform: LocalPlatform | KubernetesPlatform | None = None,
) -> AsyncIterator[Session]:
    """Open the namespace's store; ``create`` allows making one where none exists.

    ``platform``: the one ``target`` chose, if the caller has it already.
    """
    platform = platform or target.platform()
    if not create and not platform.has_state():
        raise no_site_error(platform.namespace)
    prepare = getattr(platform, "prepare", None)
    try:
        if prepare is not None:  # kubernetes: API reachable, CRDs installed, controller lease
            await prepare()
            if create and not platform.running():  # nothing here can start the controller
                raise daemon_not_running_error(platform)
        store = platform.open_store()
        try:
            sites = await store.list("Site")
            yield Session(platform=platform, store=store, site=sites[0] if sites else None)
        finally:
            store.close()
    finally:
        aclose = getattr(platform, "aclose", None)
        if aclose is not None:
            await aclose()


async def wait_until(
    session: Session,
    kind: str,
    name: str,
    done: Callable[[Resource], bool],
    timeout: float,
    *,
    since: int | None = None,
    what: str,
    fail_on_error: bool = True,
) -> Resource:
    """Wait for ``done`` on a resource; fail fast on Error status or a dead daemon.

    ``fail_on_error=False`` waits through an Error status (a used-up grant being revoked).
    """
    from skupper.store.wait import WaitTimeout, wait_for

    failed: list[Resource] = []

    async def watch_daemon() -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            await asyncio.sleep(LIVENESS_INTERVAL)
            if daemon_gone(session.platform, loop.time() - started):
                return

    waiter = asyncio.ensure_future(
        wait_for(session.store, kind, name,
                 done_or_failed(done, failed, fail_on_error=fail_on_error), timeout,
                 since=since)
    )
    guard = asyncio.ensure_future(watch_daemon())
    try:
        await asyncio.wait({waiter, guard}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        guard.cancel()
        if not waiter.done():
            waiter.cancel()
        await asyncio.gather(waiter, guard, return_exceptions=True)
    if not waiter.done() or waiter.cancelled():
        raise daemon_stopped_error(session.platform, what)
    try:
        resource = waiter.result()
    except WaitTimeout as exc:
        raise wait_timed_out_error(what, timeout, exc.last) from None
    if failed:
        raise wait_failed_error(what, failed[-1])
    return resource
