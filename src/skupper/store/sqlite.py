"""Resources of one namespace in one SQLite file, shared by the CLI and the daemon.

Several processes open the same file at once; the file's rules (write transactions,
WAL, versions, events) are in ``store.sqlite_file``. This is its asynchronous face: all
SQLite work of one store runs on one worker thread that owns the connection, so fsyncs
stay off the event loop and this process's writes are serialised and group-committed.

A watch resuming from a version older than the oldest event kept starts at the oldest
one (like a relist, the consumer must treat events as level-triggered).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import json
import sqlite3
import threading
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar, cast

from skupper.resources.model import Resource
from skupper.store import sqlite_file as sql
from skupper.store.interface import EventType, WatchEvent
from skupper.store.notify import Notifier, Subscription, registry_for
from skupper.store.sqlite_errors import StoreBusy, StoreUnusable

__all__ = ["SqliteStore", "StoreBusy", "StoreUnusable"]

T = TypeVar("T")
R = TypeVar("R")

_MAX_BATCH = 64  # writes committed together at most (bounds one transaction's length)

_Resources = list[Resource]  # aliases: inside the class, "list" is the method
_Waiter = tuple[asyncio.AbstractEventLoop, asyncio.Event]
_Closed = sql.Closed


class SqliteStore:
    """The ``Store`` of one namespace, kept in the SQLite file ``path``."""

    def __init__(
        self, path: Path, *, poll_interval: float = 0.5, busy_seconds: float = sql.BUSY_SECONDS
    ) -> None:
        self._path = Path(path)
        self._busy_seconds = busy_seconds
        # Another process's commit wakes watchers through a ping (store.notify); the poll
        # is only the safety net for a lost ping, so it can be slow and cost nothing.
        self._poll_interval = poll_interval
        self._notifier = Notifier(registry_for(self._path))
        self._subscription: Subscription | None = None
        self._subscription_loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._waiters: set[_Waiter] = set()
        self._closed = False
        self._conn: sqlite3.Connection | None = None
        # The first sign that the file is damaged, kept so a long-running owner (the
        # daemon) can stop once instead of failing every operation in a loop.
        self.failure: StoreUnusable | None = None
        self._pending_writes: list[
            tuple[Callable[[sqlite3.Connection], Any], concurrent.futures.Future[Any]]
        ] = []
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="skupper-sqlite")
        try:
            self._executor.submit(self._open).result()
        except BaseException:
            self._closed = True
            self._executor.shutdown(wait=True)
            self._notifier.close()
            raise

    # --- Store protocol -------------------------------------------------------------------

    async def get(self, kind: str, name: str) -> Resource:
        return await self._read(sql.load, kind, name)

    async def list(self, kind: str) -> _Resources:
        return await self._read(sql.list_kind, kind)

    async def create(self, resource: Resource) -> Resource:
        return await self._write_soon(functools.partial(sql.create, sql.private_copy(resource)))

    async def update(self, resource: Resource) -> Resource:
        return await self._write_soon(functools.partial(sql.update, sql.private_copy(resource)))

    async def update_status(self, resource: Resource) -> Resource:
        new = sql.private_copy(resource)
        return await self._write_soon(functools.partial(sql.update_status, new))

    async def delete(self, kind: str, name: str) -> None:
        await self._write_soon(functools.partial(sql.delete, kind, name))

    async def mutate_status(self, kind: str, name: str, change: Callable[[Resource], T]) -> T:
        """Run ``change`` on the worker thread inside one exclusive write transaction.

        Only ``status`` is taken from the dict ``change`` edited; if it is unchanged,
        nothing is written and no event is recorded.
        """
        return await self._write_soon(functools.partial(sql.mutate, kind, name, change))

    async def current_version(self) -> int:
        return await self._read(sql.current_version)

    async def watch(
        self, kind: str | None = None, since: int = 0
    ) -> AsyncGenerator[WatchEvent, None]:
        """Every event after ``since`` (for ``kind``, or all kinds), in order, forever.

        Ends quietly when the store is closed. If ``since`` predates the oldest kept
        event, the watch starts from the oldest kept one.
        """
        wake = asyncio.Event()
        waiter: _Waiter = (asyncio.get_running_loop(), wake)
        self._subscribe(waiter[0])
        with self._lock:
            self._waiters.add(waiter)
        try:
            last = since
            while not self._closed:
                # Clear before reading: a local commit after this point sets it again.
                wake.clear()
                try:
                    seen, rows = await self._read(sql.read_events, last)
                except _Closed:
                    return
                for version, row_kind, type_, body in rows:
                    last = version
                    if kind is None or row_kind == kind:
                        yield WatchEvent(cast(EventType, type_), json.loads(body), version)
                if len(rows) == sql.EVENT_BATCH:
                    continue
                # Wait for a local commit, or poll for a commit by another connection.
                while not await self._woken(wake) and not self._closed:
                    try:
                        if await self._read(sql.data_version) != seen:
                            break
                    except _Closed:
                        return
        finally:
            with self._lock:
                self._waiters.discard(waiter)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        # Queued after any pending work; the worker closes the connection it owns.
        self._executor.submit(self._close_conn)
        self._executor.shutdown(wait=True)
        self._notify()  # let watches notice and end
        self._notifier.close()
        if self._subscription is not None:
            if self._subscription_loop is not None:
                with contextlib.suppress(RuntimeError, ValueError):
                    self._subscription_loop.remove_reader(self._subscription.sock.fileno())
            self._subscription.close()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- event-loop side ------------------------------------------------------------------

    async def _read(self, query: Callable[..., R], *args: Any) -> R:
        """``query(connection, *args)`` on the worker thread that owns the connection."""
        if self._closed:
            raise _Closed()
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                self._executor, lambda: query(self._db, *args))
        except RuntimeError as error:
            if self._closed:  # the executor was shut down between the check and the submit
                raise _Closed() from error
            raise
        except sqlite3.Error as error:
            raise self._unusable(error) from None

    def _unusable(self, error: BaseException) -> BaseException:
        """``error`` as StoreUnusable if it means damage (remembered), else unchanged."""
        mapped = sql.usage_error(self._path, error, self._busy_seconds)
        if isinstance(mapped, StoreUnusable) and self.failure is None:
            self.failure = mapped
        return mapped

    async def _woken(self, wake: asyncio.Event) -> bool:
        try:
            async with asyncio.timeout(self._poll_interval):
                await wake.wait()
        except TimeoutError:
            return False
        return True

    def _subscribe(self, loop: asyncio.AbstractEventLoop) -> None:
        """Listen for other processes' commits (once per store, on the first loop)."""
        if self._subscription is not None:
            return
        self._subscription = Subscription(registry_for(self._path))
        self._subscription_loop = loop
        loop.add_reader(self._subscription.sock.fileno(), self._on_ping)

    def _on_ping(self) -> None:
        if self._subscription is not None:
            self._subscription.drain()
        self._notify()

    def _notify(self) -> None:
        with self._lock:
            waiters = list(self._waiters)
        for loop, wake in waiters:
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                loop.call_soon_threadsafe(wake.set)

    # --- worker thread --------------------------------------------------------------------

    def _open(self) -> None:
        self._conn = sql.open_checked(self._path, self._busy_seconds)

    def _close_conn(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise _Closed()
        return self._conn

    async def _write_soon(self, body: Callable[[sqlite3.Connection], R]) -> R:
        """Queue a write; writes queued together commit together (one fsync for all).

        Under a redemption storm the fsync of each COMMIT is the store's bottleneck;
        group commit lets one fsync carry every write that arrived meanwhile. Each write
        runs in its own savepoint, so one that raises is undone alone, and every caller
        hears its result only after the COMMIT is on disk.
        """
        if self._closed:
            raise _Closed()
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._lock:
            self._pending_writes.append((body, future))
        try:
            self._executor.submit(self._write_batch)
        except RuntimeError as error:
            raise _Closed() from error
        result: R = await asyncio.wrap_future(future)
        return result

    def _write_batch(self) -> None:
        with self._lock:
            batch, self._pending_writes = self._pending_writes[:_MAX_BATCH], \
                self._pending_writes[_MAX_BATCH:]
        if not batch:
            return
        outcomes: list[tuple[concurrent.futures.Future[Any], Any, BaseException | None]] = []

        def each_in_its_savepoint(conn: sqlite3.Connection) -> None:
            for body, future in batch:
                conn.execute("SAVEPOINT one_write")
                try:
                    value = body(conn)
                except Exception as exc:
                    conn.execute("ROLLBACK TO one_write")
                    conn.execute("RELEASE one_write")
                    outcomes.append((future, None, exc))
                else:
                    conn.execute("RELEASE one_write")
                    outcomes.append((future, value, None))

        try:
            sql.in_write_transaction(self._db, each_in_its_savepoint)
        except BaseException as exc:
            failure = self._unusable(exc)
            for _, future in batch:
                future.set_exception(failure)
            return
        self._notify()
        self._notifier.notify()
        for future, value, error in outcomes:
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(value)
