"""A namespace's store for a short command on its own thread: no asyncio, no worker.

``skupper access-token issue`` does four things with the store (read the site, create a
grant, wait for the daemon to fill it in, delete it if anything failed). Through the
asynchronous ``SqliteStore`` they cost asyncio's import, an event loop and a worker
thread: a third of the command's run. This face runs the same SQL (``store.sqlite_file``)
on the calling thread, and waits on the same cross-process pings (``store.notify``)
with ``select``.
"""

from __future__ import annotations

import select
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from skupper.resources.model import Resource
from skupper.store import sqlite_file as sql
from skupper.store.notify import Notifier, Subscription, registry_for

T = TypeVar("T")


class WaitTimedOut(Exception):
    """The resource did not reach the state in time; ``last`` is what it looked like."""

    def __init__(self, last: Resource | None) -> None:
        super().__init__("timed out")
        self.last = last


class BlockingSqliteStore:
    """The store of one namespace in the SQLite file ``path``, used from one thread."""

    def __init__(
        self, path: Path, *, poll_interval: float = 0.5, busy_seconds: float = sql.BUSY_SECONDS
    ) -> None:
        self._path = Path(path)
        self._busy_seconds = busy_seconds
        # A lost ping only delays a wait by this much: the file is re-read this often.
        self._poll_interval = poll_interval
        self._conn = sql.open_checked(self._path, busy_seconds)
        self._notifier = Notifier(registry_for(self._path))

    def get(self, kind: str, name: str) -> Resource:
        return self._query(lambda conn: sql.load(conn, kind, name))

    def list(self, kind: str) -> list[Resource]:
        return self._query(lambda conn: sql.list_kind(conn, kind))

    def create(self, resource: Resource) -> Resource:
        new = sql.private_copy(resource)
        return self._write(lambda conn: sql.create(new, conn))

    def delete(self, kind: str, name: str) -> None:
        self._write(lambda conn: sql.delete(kind, name, conn))

    def wait_for(
        self,
        kind: str,
        name: str,
        done: Callable[[Resource], bool],
        timeout: float,
        *,
        stop: Callable[[], bool] | None = None,
        check_every: float = 0.25,
    ) -> Resource | None:
        """The resource once ``done(resource)``; None as soon as ``stop()`` says so.

        WaitTimedOut after ``timeout`` seconds; NotFound if the resource goes away.
        ``stop`` is asked every ``check_every`` seconds (the daemon's liveness).
        """
        subscription = Subscription(registry_for(self._path))  # before the first read
        try:
            deadline = time.monotonic() + timeout
            next_check = time.monotonic() + check_every
            last: Resource | None = None
            while True:
                last = self.get(kind, name)
                if done(last):
                    return last
                now = time.monotonic()
                if now >= deadline:
                    raise WaitTimedOut(last)
                if stop is not None and now >= next_check:
                    if stop():
                        return None
                    next_check = now + check_every
                pause = min(deadline, next_check) - now if stop else deadline - now
                select.select([subscription.sock], [], [], min(pause, self._poll_interval))
                subscription.drain()
        finally:
            subscription.close()

    def close(self) -> None:
        self._notifier.close()
        self._conn.close()

    def __enter__(self) -> BlockingSqliteStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _query(self, body: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return body(self._conn)
        except sqlite3.Error as error:
            raise sql.usage_error(self._path, error, self._busy_seconds) from None

    def _write(self, body: Callable[[sqlite3.Connection], T]) -> T:
        value = self._query(lambda conn: sql.in_write_transaction(conn, body))
        self._notifier.notify()
        return value
