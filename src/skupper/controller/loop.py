"""The reconcile loop: watch the store, queue (kind, name) keys, reconcile one at a time.

One worker keeps reconciles ordered and free of races among themselves; a Conflict
(someone else wrote first, e.g. a redemption) simply queues the key again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from skupper.store.interface import Conflict, Store

log = logging.getLogger(__name__)

Key = tuple[str, str]
Reconcile = Callable[[str], Awaitable[None]]

# After an unexpected error, wait this long before trying the same key again.
RETRY_DELAY_SECONDS = 1.0
# Reconcile order when several keys are waiting: the site before what depends on it.
_PRIORITY = {"Site": 0}


class Controller:
    def __init__(self, store: Store, reconcilers: dict[str, Reconcile]) -> None:
        self._store = store
        self._reconcilers = reconcilers
        self._pending: set[Key] = set()
        self._wake = asyncio.Event()
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        # Called after a Site reconcile, so everything that depends on the site follows.
        self.after_site: Callable[[], Awaitable[None]] | None = None

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(self._reconcilers)

    def enqueue(self, kind: str, name: str) -> None:
        if kind in self._reconcilers:
            self._pending.add((kind, name))
            self._wake.set()

    def schedule(self, kind: str, name: str, delay: float) -> None:
        key = (kind, name)
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        self._timers[key] = loop.call_later(delay, self.enqueue, kind, name)

    async def enqueue_all(self, kind: str) -> None:
        for resource in await self._store.list(kind):
            self.enqueue(kind, resource["metadata"]["name"])

    async def run(self) -> None:
        version = await self._store.current_version()
        for kind in self._reconcilers:
            await self.enqueue_all(kind)
        watcher = asyncio.create_task(self._watch(version), name="controller-watch")
        try:
            await self._work()
        finally:
            watcher.cancel()
            for timer in self._timers.values():
                timer.cancel()

    async def _watch(self, since: int) -> None:
        async for event in self._store.watch(None, since=since):
            self.enqueue(event.resource["kind"], event.resource["metadata"]["name"])

    async def _work(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                key = min(self._pending, key=lambda k: (_PRIORITY.get(k[0], 1), k))
                self._pending.discard(key)
                await self._reconcile(key)

    async def _reconcile(self, key: Key) -> None:
        kind, name = key
        try:
            await self._reconcilers[kind](name)
        except Conflict:
            self.enqueue(kind, name)
            return
        except Exception:
            log.exception("reconciling %s %s failed; retrying", kind, name)
            self.schedule(kind, name, RETRY_DELAY_SECONDS)
            return
        if kind == "Site" and self.after_site is not None:
            await self.after_site()
