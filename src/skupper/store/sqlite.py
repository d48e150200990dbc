"""Resources of one namespace in one SQLite file, shared by the CLI and the daemon.

Several processes open the same file at once, so every write is a ``BEGIN IMMEDIATE``
transaction (SQLite's write lock is the cross-process mutex that keeps redemption counts
exact) and the file is in WAL mode with ``synchronous=FULL`` (a COMMIT is on disk).

The store-wide version is the rowid of the ``events`` table: each write inserts one event
in its own transaction, and the resource's ``metadata.resourceVersion`` is that number.
Only the newest ``KEEP_EVENTS`` events are kept; a watch resuming from an older version
starts at the oldest event still kept (like a relist, the consumer must treat events as
level-triggered).

All SQLite work of one store runs on one worker thread that owns the connection: fsyncs
stay off the event loop and this process's writes are serialised.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import copy
import functools
import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar, cast

from skupper.resources.model import Resource, now_rfc3339, valid_name
from skupper.store.interface import (
    AlreadyExists,
    Conflict,
    EventType,
    NotFound,
    StoreError,
    WatchEvent,
)
from skupper.store.notify import Notifier, Subscription, registry_for
from skupper.store.sqlite_errors import (
    StoreBusy,
    StoreUnusable,
    check_regular_file,
    unusable_reason,
)

__all__ = ["SqliteStore", "StoreBusy", "StoreUnusable"]

T = TypeVar("T")
R = TypeVar("R")

KEEP_EVENTS = 10_000
_BUSY_SECONDS = 10.0  # how long a write waits for another process's write lock
_PRUNE_EVERY = 100  # pruning is a range delete on the primary key: cheap, but not every write
_BATCH = 500  # events read per query by a watch
_MAX_BATCH = 64  # writes committed together at most (bounds one transaction's length)

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS resources (
        kind TEXT NOT NULL, name TEXT NOT NULL, body TEXT NOT NULL, version INTEGER NOT NULL,
        PRIMARY KEY (kind, name))""",
    """CREATE TABLE IF NOT EXISTS events (
        version INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL, name TEXT NOT NULL, type TEXT NOT NULL, body TEXT NOT NULL)""",
)

_Rows = list[tuple[int, str, str, str]]  # version, kind, type, body
_Resources = list[Resource]  # aliases: inside the class, "list" is the method
_Waiter = tuple[asyncio.AbstractEventLoop, asyncio.Event]


class _Closed(StoreError):
    def __init__(self) -> None:
        super().__init__("the store is closed")




class SqliteStore:
    """The ``Store`` of one namespace, kept in the SQLite file ``path``."""

    def __init__(
        self, path: Path, *, poll_interval: float = 0.5, busy_seconds: float = _BUSY_SECONDS
    ) -> None:
        self._path = Path(path)
        self._busy_seconds = busy_seconds
        check_regular_file(self._path)
        try:
            _create_private(self._path)
        except OSError as error:
            raise StoreUnusable(self._path, unusable_reason(self._path, error) or str(error)) \
                from None
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
        except BaseException as error:
            self._closed = True
            self._executor.shutdown(wait=True)
            self._notifier.close()
            if type(error) is sqlite3.OperationalError and "locked" in str(error):
                raise StoreBusy(self._path, self._busy_seconds) from None
            reason = unusable_reason(self._path, error)
            if reason is not None:
                raise StoreUnusable(self._path, reason) from None
            raise

    # --- Store protocol -------------------------------------------------------------------

    async def get(self, kind: str, name: str) -> Resource:
        return await self._run(self._must_load_readonly, kind, name)

    async def list(self, kind: str) -> _Resources:
        return await self._run(self._list, kind)

    async def create(self, resource: Resource) -> Resource:
        return await self._write_soon(functools.partial(self._create, _copy(resource)))

    async def update(self, resource: Resource) -> Resource:
        return await self._write_soon(functools.partial(self._update, _copy(resource)))

    async def update_status(self, resource: Resource) -> Resource:
        new = _copy(resource)
        return await self._write_soon(functools.partial(self._update_status, new))

    async def delete(self, kind: str, name: str) -> None:
        await self._write_soon(functools.partial(self._delete, kind, name))

    async def mutate_status(self, kind: str, name: str, change: Callable[[Resource], T]) -> T:
        """Run ``change`` on the worker thread inside one exclusive write transaction.

        Only ``status`` is taken from the dict ``change`` edited; if it is unchanged,
        nothing is written and no event is recorded.
        """
        return await self._write_soon(functools.partial(self._mutate, kind, name, change))

    async def current_version(self) -> int:
        return await self._run(self._current_version)

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
                    seen, rows = await self._run(self._read_events, last)
                except _Closed:
                    return
                for version, row_kind, type_, body in rows:
                    last = version
                    if kind is None or row_kind == kind:
                        yield WatchEvent(cast(EventType, type_), json.loads(body), version)
                if len(rows) == _BATCH:
                    continue
                # Wait for a local commit, or poll for a commit by another connection.
                while not await self._woken(wake) and not self._closed:
                    try:
                        if await self._run(self._data_version) != seen:
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

    async def _run(self, fn: Callable[..., R], *args: Any) -> R:
        if self._closed:
            raise _Closed()
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, functools.partial(fn, *args))
        except RuntimeError as error:
            if self._closed:  # the executor was shut down between the check and the submit
                raise _Closed() from error
            raise
        except sqlite3.Error as error:
            raise self._unusable(error) from None

    def _unusable(self, error: BaseException) -> BaseException:
        """``error`` as StoreUnusable if it means damage (remembered), else unchanged."""
        if not isinstance(error, sqlite3.Error):
            return error
        if type(error) is sqlite3.OperationalError and "locked" in str(error):
            return StoreBusy(self._path, self._busy_seconds)
        reason = unusable_reason(self._path, error)
        if reason is None:
            return error
        unusable = StoreUnusable(self._path, reason, opening=False)
        if self.failure is None:
            self.failure = unusable
        return unusable

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
        conn = sqlite3.connect(self._path, timeout=self._busy_seconds, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_seconds * 1000)}")
            _retry_locked(lambda: conn.execute("PRAGMA journal_mode = WAL"))
            conn.execute("PRAGMA synchronous = FULL")
            for statement in _SCHEMA:
                conn.execute(statement)
            # Reading both tables walks their roots: a damaged file fails here, at open,
            # rather than in the middle of some later command.
            conn.execute("SELECT COUNT(*) FROM resources").fetchone()
            conn.execute("SELECT MAX(version) FROM events").fetchone()
        except BaseException:
            conn.close()
            raise
        self._conn = conn

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
        try:
            conn = self._db
            conn.execute("BEGIN IMMEDIATE")
            try:
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
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
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

    def _load(self, conn: sqlite3.Connection, kind: str, name: str) -> Resource:
        row = conn.execute(
            "SELECT body FROM resources WHERE kind = ? AND name = ?", (kind, name)
        ).fetchone()
        if row is None:
            raise NotFound(kind, name)
        loaded: Resource = json.loads(row[0])
        return loaded

    def _must_load_readonly(self, kind: str, name: str) -> Resource:
        return self._load(self._db, kind, name)

    def _list(self, kind: str) -> _Resources:
        rows = self._db.execute(
            "SELECT body FROM resources WHERE kind = ? ORDER BY name", (kind,)
        ).fetchall()
        return [json.loads(row[0]) for row in rows]

    def _current_version(self) -> int:
        row = self._db.execute("SELECT COALESCE(MAX(version), 0) FROM events").fetchone()
        return int(row[0])

    def _data_version(self) -> int:
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def _read_events(self, after: int) -> tuple[int, _Rows]:
        # data_version first: a commit between the two reads shows as a change next poll.
        seen = self._data_version()
        rows = self._db.execute(
            "SELECT version, kind, type, body FROM events WHERE version > ?"
            " ORDER BY version LIMIT ?",
            (after, _BATCH),
        ).fetchall()
        return seen, rows

    def _record(self, conn: sqlite3.Connection, type_: EventType, body: Resource) -> None:
        """Append the event for ``body`` and store (or drop) it: one new store version."""
        kind, name = body["kind"], body["metadata"]["name"]
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        version = (int(row[0]) if row else 0) + 1  # we hold the write lock: nobody races us
        body["metadata"]["resourceVersion"] = str(version)
        text = json.dumps(body, separators=(",", ":"))
        conn.execute(
            "INSERT INTO events (version, kind, name, type, body) VALUES (?, ?, ?, ?, ?)",
            (version, kind, name, type_, text),
        )
        if type_ == "DELETED":
            conn.execute("DELETE FROM resources WHERE kind = ? AND name = ?", (kind, name))
        else:
            conn.execute(
                "INSERT OR REPLACE INTO resources (kind, name, body, version) VALUES (?, ?, ?, ?)",
                (kind, name, text, version),
            )
        if version % _PRUNE_EVERY == 0:
            conn.execute("DELETE FROM events WHERE version <= ?", (version - KEEP_EVENTS,))

    def _create(self, new: Resource, conn: sqlite3.Connection) -> Resource:
        kind, name = _key(new)
        query = "SELECT 1 FROM resources WHERE kind = ? AND name = ?"
        if conn.execute(query, (kind, name)).fetchone() is not None:
            raise AlreadyExists(kind, name)
        meta = new["metadata"]
        meta["uid"] = str(uuid.uuid4())
        meta["generation"] = 1
        meta["creationTimestamp"] = now_rfc3339()
        self._record(conn, "ADDED", new)
        return new

    def _current(self, conn: sqlite3.Connection, new: Resource) -> Resource:
        """The stored resource ``new`` replaces, after the optimistic-concurrency check."""
        kind, name = _key(new)
        stored = self._load(conn, kind, name)
        given = new["metadata"].get("resourceVersion")
        current = stored["metadata"].get("resourceVersion")
        if given not in (None, "") and str(given) != current:
            raise Conflict(f'{kind} "{name}": resourceVersion {given} is stale (now {current})')
        return stored

    def _update(self, new: Resource, conn: sqlite3.Connection) -> Resource:
        stored = self._current(conn, new)
        before = copy.deepcopy(stored)
        _replace(stored, new, "spec")
        for key in ("labels", "annotations"):
            _replace(stored["metadata"], new["metadata"], key)
        if stored.get("spec") != before.get("spec"):
            stored["metadata"]["generation"] = int(stored["metadata"].get("generation", 0)) + 1
        if stored != before:  # like the API server, a no-op update is not a new version
            self._record(conn, "MODIFIED", stored)
        return stored

    def _update_status(self, new: Resource, conn: sqlite3.Connection) -> Resource:
        stored = self._current(conn, new)
        if stored.get("status") != new.get("status"):
            _replace(stored, new, "status")
            self._record(conn, "MODIFIED", stored)
        return stored

    def _mutate(
        self, kind: str, name: str, change: Callable[[Resource], T], conn: sqlite3.Connection
    ) -> T:
        stored = self._load(conn, kind, name)
        # A JSON round trip copies a resource several times faster than deepcopy.
        work = json.loads(json.dumps(stored))
        result = change(work)  # may raise: _write rolls back, nothing is written
        if work.get("status") != stored.get("status"):
            _replace(stored, work, "status")
            self._record(conn, "MODIFIED", stored)
        return result

    def _delete(self, kind: str, name: str, conn: sqlite3.Connection) -> None:
        self._record(conn, "DELETED", self._load(conn, kind, name))


def _copy(resource: Resource) -> Resource:
    # A JSON round trip: a private deep copy that is also proof the value is storable.
    copied: Resource = json.loads(json.dumps(resource))
    return copied


def _key(resource: Resource) -> tuple[str, str]:
    kind = resource.get("kind")
    meta = resource.setdefault("metadata", {})
    name = meta.get("name") if isinstance(meta, dict) else None
    if not isinstance(kind, str) or not kind:
        raise ValueError("resource has no kind")
    if not isinstance(name, str) or not valid_name(name):
        raise ValueError(f"{kind}: invalid metadata.name {name!r}")
    return kind, name


def _replace(target: dict[str, Any], source: dict[str, Any], key: str) -> None:
    if key in source:
        target[key] = source[key]
    else:
        target.pop(key, None)


def _create_private(path: Path) -> None:
    """Create the database file 0600 before SQLite does (it would use the umask)."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))


def _retry_locked(step: Callable[[], object]) -> None:
    # Switching a new file to WAL needs an exclusive lock that the busy handler does not
    # always wait for, when two processes open a fresh file together.
    for _ in range(100):
        try:
            step()
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) and "busy" not in str(error):
                raise
            time.sleep(0.05)
    step()
