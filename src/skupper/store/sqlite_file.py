"""The SQL of a namespace's store file: one connection's reads and writes, no threads.

Both faces of the store run these: ``store.sqlite.SqliteStore`` (the daemon's and most
commands', asynchronous, on a worker thread) and ``store.sqlite_blocking`` (short
commands on the calling thread, so they need not import asyncio). The file's rules:

- every write is a ``BEGIN IMMEDIATE`` transaction (SQLite's write lock is the
  cross-process mutex that keeps redemption counts exact), in WAL mode with
  ``synchronous=FULL`` (a COMMIT is on disk);
- the store-wide version is the rowid of the ``events`` table: each write inserts one
  event, and the resource's ``metadata.resourceVersion`` is that number. Only the newest
  ``KEEP_EVENTS`` events are kept.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from skupper.base.ids import random_uuid
from skupper.resources.model import Resource, now_rfc3339, resource_key
from skupper.store.interface import AlreadyExists, Conflict, EventType, NotFound, StoreError
from skupper.store.sqlite_errors import (
    StoreBusy,
    StoreUnusable,
    check_regular_file,
    unusable_reason,
)

T = TypeVar("T")

KEEP_EVENTS = 10_000
BUSY_SECONDS = 10.0  # how long a write waits for another process's write lock
_PRUNE_EVERY = 100  # pruning is a range delete on the primary key: cheap, but not every write
EVENT_BATCH = 500  # events read per query by a watch

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS resources (
        kind TEXT NOT NULL, name TEXT NOT NULL, body TEXT NOT NULL, version INTEGER NOT NULL,
        PRIMARY KEY (kind, name))""",
    """CREATE TABLE IF NOT EXISTS events (
        version INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL, name TEXT NOT NULL, type TEXT NOT NULL, body TEXT NOT NULL)""",
)

Rows = list[tuple[int, str, str, str]]  # version, kind, type, body


class Closed(StoreError):
    def __init__(self) -> None:
        super().__init__("the store is closed")


def open_checked(path: Path, busy_seconds: float) -> sqlite3.Connection:
    """The file's connection; StoreBusy or StoreUnusable (one line) when it cannot be.

    A directory, FIFO or device in its place is refused before SQLite opens it; a new
    file is created 0600; a damaged one fails here, not in some later command.
    """
    check_regular_file(path)
    try:
        create_private(path)
    except OSError as error:
        raise StoreUnusable(path, unusable_reason(path, error) or str(error)) from None
    try:
        return _connect(path, busy_seconds)
    except sqlite3.Error as error:
        if type(error) is sqlite3.OperationalError and "locked" in str(error):
            raise StoreBusy(path, busy_seconds) from None
        reason = unusable_reason(path, error)
        if reason is not None:
            raise StoreUnusable(path, reason) from None
        raise


def _connect(path: Path, busy_seconds: float) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=busy_seconds, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_seconds * 1000)}")
        _retry_locked(lambda: conn.execute("PRAGMA journal_mode = WAL"))
        conn.execute("PRAGMA synchronous = FULL")
        for statement in _SCHEMA:
            conn.execute(statement)
        # Reading both tables walks their roots: a damaged file fails here, at open.
        conn.execute("SELECT COUNT(*) FROM resources").fetchone()
        conn.execute("SELECT MAX(version) FROM events").fetchone()
    except BaseException:
        conn.close()
        raise
    return conn


def usage_error(path: Path, error: BaseException, busy_seconds: float) -> BaseException:
    """``error`` met on an open file: StoreBusy or StoreUnusable when it means that."""
    if not isinstance(error, sqlite3.Error):
        return error
    if type(error) is sqlite3.OperationalError and "locked" in str(error):
        return StoreBusy(path, busy_seconds)
    reason = unusable_reason(path, error)
    return error if reason is None else StoreUnusable(path, reason, opening=False)


def in_write_transaction(conn: sqlite3.Connection, body: Callable[[sqlite3.Connection], T]) -> T:
    """Run ``body`` in one ``BEGIN IMMEDIATE`` ... ``COMMIT``; rolled back if it raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        value = body(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return value


# --- reads ----------------------------------------------------------------------------------

def load(conn: sqlite3.Connection, kind: str, name: str) -> Resource:
    row = conn.execute(
        "SELECT body FROM resources WHERE kind = ? AND name = ?", (kind, name)
    ).fetchone()
    if row is None:
        raise NotFound(kind, name)
    loaded: Resource = json.loads(row[0])
    return loaded


def list_kind(conn: sqlite3.Connection, kind: str) -> list[Resource]:
    rows = conn.execute(
        "SELECT body FROM resources WHERE kind = ? ORDER BY name", (kind,)
    ).fetchall()
    return [json.loads(row[0]) for row in rows]


def current_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM events").fetchone()
    return int(row[0])


def data_version(conn: sqlite3.Connection) -> int:
    """Changes whenever another connection commits (SQLite's PRAGMA data_version)."""
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


def read_events(conn: sqlite3.Connection, after: int) -> tuple[int, Rows]:
    # data_version first: a commit between the two reads shows as a change next poll.
    seen = data_version(conn)
    rows = conn.execute(
        "SELECT version, kind, type, body FROM events WHERE version > ?"
        " ORDER BY version LIMIT ?",
        (after, EVENT_BATCH),
    ).fetchall()
    return seen, rows


# --- writes (each runs inside a write transaction) ------------------------------------------

def record(conn: sqlite3.Connection, type_: EventType, body: Resource) -> None:
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


def create(new: Resource, conn: sqlite3.Connection) -> Resource:
    kind, name = resource_key(new)
    query = "SELECT 1 FROM resources WHERE kind = ? AND name = ?"
    if conn.execute(query, (kind, name)).fetchone() is not None:
        raise AlreadyExists(kind, name)
    meta = new["metadata"]
    meta["uid"] = random_uuid()
    meta["generation"] = 1
    meta["creationTimestamp"] = now_rfc3339()
    record(conn, "ADDED", new)
    return new


def _current(conn: sqlite3.Connection, new: Resource) -> Resource:
    """The stored resource ``new`` replaces, after the optimistic-concurrency check."""
    kind, name = resource_key(new)
    stored = load(conn, kind, name)
    given = new["metadata"].get("resourceVersion")
    current = stored["metadata"].get("resourceVersion")
    if given not in (None, "") and str(given) != current:
        raise Conflict(f'{kind} "{name}": resourceVersion {given} is stale (now {current})')
    return stored


def update(new: Resource, conn: sqlite3.Connection) -> Resource:
    stored = _current(conn, new)
    before = copy.deepcopy(stored)
    _replace(stored, new, "spec")
    for key in ("labels", "annotations"):
        _replace(stored["metadata"], new["metadata"], key)
    if stored.get("spec") != before.get("spec"):
        stored["metadata"]["generation"] = int(stored["metadata"].get("generation", 0)) + 1
    if stored != before:  # like the API server, a no-op update is not a new version
        record(conn, "MODIFIED", stored)
    return stored


def update_status(new: Resource, conn: sqlite3.Connection) -> Resource:
    stored = _current(conn, new)
    if stored.get("status") != new.get("status"):
        _replace(stored, new, "status")
        record(conn, "MODIFIED", stored)
    return stored


def mutate(kind: str, name: str, change: Callable[[Resource], T], conn: sqlite3.Connection) -> T:
    stored = load(conn, kind, name)
    # A JSON round trip copies a resource several times faster than deepcopy.
    work = json.loads(json.dumps(stored))
    result = change(work)  # may raise: the transaction rolls back, nothing is written
    if work.get("status") != stored.get("status"):
        _replace(stored, work, "status")
        record(conn, "MODIFIED", stored)
    return result


def delete(kind: str, name: str, conn: sqlite3.Connection) -> None:
    record(conn, "DELETED", load(conn, kind, name))


# --- helpers ----------------------------------------------------------------------------------

def private_copy(resource: Resource) -> Resource:
    # A JSON round trip: a private deep copy that is also proof the value is storable.
    copied: Resource = json.loads(json.dumps(resource))
    return copied


def _replace(target: dict[str, Any], source: dict[str, Any], key: str) -> None:
    if key in source:
        target[key] = source[key]
    else:
        target.pop(key, None)


def create_private(path: Path) -> None:
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
