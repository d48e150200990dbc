"""Coalesced status writes: the latest change per resource wins, one write at a time.

Link reports can arrive faster than the store takes writes (a flapping link); only
the newest state of each resource matters, so older pending changes are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from skupper.resources import Resource
from skupper.store.interface import NotFound, Store

log = logging.getLogger(__name__)

Change = Callable[[Resource], None]


class StatusWriter:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._pending: dict[tuple[str, str], Change] = {}
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="status-writer")

    def submit(self, kind: str, name: str, change: Change) -> None:
        self._pending[(kind, name)] = change
        self._idle.clear()
        self._wake.set()

    async def flush_and_stop(self, timeout: float = 2.0) -> None:
        """Write what is pending (bounded), then stop."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        await self.stop()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                key = next(iter(self._pending))
                change = self._pending.pop(key)
                try:
                    await self._store.mutate_status(key[0], key[1], change)
                except NotFound:
                    pass
                except Exception:
                    log.exception("writing the status of %s %s failed", *key)
            self._idle.set()
