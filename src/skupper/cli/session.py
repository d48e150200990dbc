"""What most commands do first: find the platform, the store and the site; wait well."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from skupper.base.durations import humanize_duration
from skupper.base.errors import SkupperError
from skupper.cli.options import Target
from skupper.resources import Resource
from skupper.resources.status import ERROR, status_message

if TYPE_CHECKING:
    from skupper.platforms.kubernetes import KubernetesPlatform
    from skupper.platforms.local_platform import LocalPlatform
    from skupper.store.interface import Store

# Daemon liveness is checked this often while waiting, so a crash is reported at once.
_LIVENESS_INTERVAL = 0.25
# A daemon just launched may take this long to take its lock.
_STARTUP_GRACE = 5.0


def no_site_error(namespace: str, action: str = "") -> SkupperError:
    return SkupperError(
        "No site resource exists" + (f" {action}" if action else ""),
        f'there is no site in namespace "{namespace}"',
        'Create one with "skupper site create <name>".',
    )


def daemon_not_running_error(platform: LocalPlatform | KubernetesPlatform) -> SkupperError:
    if platform.name == "kubernetes":  # a controller in the cluster, not a local daemon
        return platform.not_running_error()  # type: ignore[union-attr]
    return SkupperError(
        "The site is stopped",
        f'the site daemon for namespace "{platform.namespace}" is not running',
        f'Start it with "skupper system start -n {platform.namespace}".',
    )


@dataclass
class Session:
    platform: LocalPlatform | KubernetesPlatform
    store: Store
    site: Resource | None


@contextlib.asynccontextmanager
async def open_session(target: Target, *, create: bool = False) -> AsyncIterator[Session]:
    """Open the namespace's store; ``create`` allows making one where none exists."""
    platform = target.platform()
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


def require_site(session: Session) -> Resource:
    if session.site is None:
        raise no_site_error(session.platform.namespace)
    return session.site


def require_running(session: Session) -> None:
    if not session.platform.running():
        raise daemon_not_running_error(session.platform)


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

    def finished(resource: Resource) -> bool:
        if done(resource):
            return True
        status = resource.get("status") or {}
        if fail_on_error and status.get("status") == ERROR and status.get("message"):
            failed.append(resource)
            return True
        return False

    async def watch_daemon() -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        exited = getattr(session.platform, "daemon_exited", None)
        while True:
            await asyncio.sleep(_LIVENESS_INTERVAL)
            if exited is not None and exited():  # the one this command started: no grace
                return
            if not session.platform.running() and loop.time() - started > _STARTUP_GRACE:
                return

    waiter = asyncio.ensure_future(
        wait_for(session.store, kind, name, finished, timeout, since=since)
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
        raise SkupperError(
            f"{what} failed",
            getattr(session.platform, "stopped_message", "the site daemon stopped"),
            f"See its log: {session.platform.log_file}",
        )
    try:
        resource = waiter.result()
    except WaitTimeout as exc:
        last = exc.last
        reason = status_message(last) if last else "no status yet"
        raise SkupperError(
            f"{what} did not complete within {humanize_duration(timeout)}",
            f"its status is: {reason}",
        ) from None
    if failed:
        raise SkupperError(f"{what} failed", status_message(failed[-1]))
    return resource
