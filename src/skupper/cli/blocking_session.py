"""A session on the calling thread, for short commands on platforms that allow one.

``cli.session`` opens the store through asyncio, which costs a third of a short
command's run in imports alone. Where the platform's store can be used from one
thread (``platform.has_blocking_store``: the local, docker and podman platforms), a
command may open this instead; the checks and the lines they say are the same
(``cli.session_checks``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, NamedTuple

from skupper.cli.session_checks import (
    LIVENESS_INTERVAL,
    daemon_gone,
    daemon_stopped_error,
    done_or_failed,
    no_site_error,
    wait_failed_error,
    wait_timed_out_error,
)

if TYPE_CHECKING:
    from skupper.platforms.local_platform import LocalPlatform
    from skupper.resources import Resource
    from skupper.store.sqlite_blocking import BlockingSqliteStore


class BlockingSession(NamedTuple):
    platform: LocalPlatform
    store: BlockingSqliteStore
    site: Resource | None


@contextlib.contextmanager
def open_blocking_session(platform: LocalPlatform) -> Iterator[BlockingSession]:
    """The namespace's store and site; no site error where the namespace has no state."""
    if not platform.has_state():
        raise no_site_error(platform.namespace)
    with platform.open_blocking_store() as store:
        sites = store.list("Site")
        yield BlockingSession(platform=platform, store=store, site=sites[0] if sites else None)


def wait_until_blocking(
    session: BlockingSession,
    kind: str,
    name: str,
    done: Callable[[Resource], bool],
    timeout: float,
    *,
    what: str,
) -> Resource:
    """``cli.session.wait_until`` on this thread: done, Error status, or a dead daemon."""
    import time

    from skupper.store.sqlite_blocking import WaitTimedOut

    failed: list[Resource] = []
    started = time.monotonic()

    def stop() -> bool:
        return daemon_gone(session.platform, time.monotonic() - started)

    try:
        resource = session.store.wait_for(kind, name, done_or_failed(done, failed), timeout,
                                          stop=stop, check_every=LIVENESS_INTERVAL)
    except WaitTimedOut as exc:
        raise wait_timed_out_error(what, timeout, exc.last) from None
    if resource is None:
        raise daemon_stopped_error(session.platform, what)
    if failed:
        raise wait_failed_error(what, failed[-1])
    return resource
