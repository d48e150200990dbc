"""SqliteStore on a damaged or locked file: one SkupperError line, never a sqlite3 traceback."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path

import pytest

from skupper.base.errors import SkupperError
from skupper.resources import new_resource
from skupper.store.sqlite import SqliteStore, StoreBusy, StoreUnusable


def _filled(path: Path, count: int = 40) -> bytes:
    async def fill() -> None:
        store = SqliteStore(path)
        try:
            for i in range(count):
                await store.create(new_resource("Site", f"s{i}", {"pad": "x" * 400}))
        finally:
            store.close()

    asyncio.run(fill())
    return path.read_bytes()


@pytest.mark.parametrize(("damage", "reason"), [
    (lambda data: os.urandom(len(data)), "the file is not a SQLite database"),
    (lambda data: data[: len(data) // 2], "the database is damaged"),
    (lambda data: data[:100], "the database is damaged"),
    (lambda data: data[:8192] + os.urandom(len(data) - 8192), "the database is damaged"),
])
def test_a_damaged_file_is_refused_at_open(tmp_path: Path, damage: object, reason: str) -> None:
    path = tmp_path / "store.db"
    data = _filled(path)
    path.write_bytes(damage(data))  # type: ignore[operator]
    with pytest.raises(StoreUnusable) as caught:
        SqliteStore(path)
    line = caught.value.line()
    assert isinstance(caught.value, SkupperError) and "\n" not in line
    assert line.startswith(f"Cannot open the site's store at {path}: {reason}")
    assert line.endswith('run "skupper site delete" to remove the namespace.')


def test_a_directory_or_fifo_in_its_place_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "dir.db"
    folder.mkdir()
    with pytest.raises(StoreUnusable, match="it is a directory, not a file"):
        SqliteStore(folder)
    fifo = tmp_path / "fifo.db"
    os.mkfifo(fifo)
    with pytest.raises(StoreUnusable, match="it is not a regular file"):
        SqliteStore(fifo)


def test_damage_found_later_is_remembered_for_the_daemon(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    _filled(path)

    async def scenario() -> None:
        store = SqliteStore(path)
        try:
            assert store.failure is None
            with sqlite3.connect(path) as other:
                other.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            other.close()
            with open(path, "r+b") as handle:
                handle.write(os.urandom(path.stat().st_size))
            with pytest.raises(StoreUnusable, match=r"^Cannot use the site's store"):
                await store.list("Site")
            with pytest.raises(StoreUnusable):
                await store.create(new_resource("Site", "late", {}))
            assert store.failure is not None
        finally:
            store.close()

    asyncio.run(scenario())


def test_a_lock_held_past_the_busy_timeout_is_one_line_and_not_damage(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    _filled(path, 1)

    async def scenario() -> None:
        store = SqliteStore(path, busy_seconds=0.2)
        holder = sqlite3.connect(path, isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")
            with pytest.raises(StoreBusy) as caught:
                await store.create(new_resource("Site", "blocked", {}))
            assert "stayed locked for 0.2 s" in caught.value.line()
            assert store.failure is None  # busy is not damage: the daemon keeps going
            holder.execute("ROLLBACK")
            await store.create(new_resource("Site", "later", {}))
        finally:
            holder.close()
            store.close()

    asyncio.run(scenario())
