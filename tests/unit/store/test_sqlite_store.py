"""SqliteStore on real files: Kubernetes semantics, exact counts across processes, watches."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import sqlite3
import stat
import time
from contextlib import aclosing, closing
from pathlib import Path
from typing import Any

import pytest

import skupper.store.sqlite_file as sqlite_module
from skupper.resources import new_resource
from skupper.store.interface import AlreadyExists, Conflict, NotFound, WatchEvent
from skupper.store.sqlite import SqliteStore

SPAWN = multiprocessing.get_context("spawn")


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_create_get_list_delete(tmp_path: Path) -> None:
    async def main(store: SqliteStore) -> None:
        assert await store.current_version() == 0
        created = await store.create(new_resource("Site", "west", {"linkAccess": "default"}))
        meta = created["metadata"]
        assert meta["generation"] == 1
        assert meta["resourceVersion"] == "1"
        assert len(meta["uid"]) == 36
        assert meta["creationTimestamp"].endswith("Z")
        assert "namespace" not in meta
        assert await store.get("Site", "west") == created
        assert await store.current_version() == 1

        with pytest.raises(AlreadyExists):
            await store.create(new_resource("Site", "west"))
        await store.create(new_resource("Site", "east"))
        await store.create(new_resource("Link", "aaa"))
        assert [s["metadata"]["name"] for s in await store.list("Site")] == ["east", "west"]
        assert await store.list("AccessGrant") == []

        await store.delete("Site", "west")
        assert await store.current_version() == 4
        with pytest.raises(NotFound):
            await store.get("Site", "west")
        with pytest.raises(NotFound):
            await store.delete("Site", "west")
        with pytest.raises(ValueError):
            await store.create(new_resource("Site", "../bad"))

    with SqliteStore(tmp_path / "ns.db") as store:
        asyncio.run(main(store))


def test_update_and_update_status(tmp_path: Path) -> None:
    async def main(store: SqliteStore) -> None:
        site = await store.create(new_resource("Site", "west", {"ha": False}))
        site["status"] = {"status": "Ready"}
        site = await store.update_status(site)
        assert site["metadata"]["generation"] == 1

        # Labels change, spec does not: same generation, status kept.
        change = new_resource("Site", "west", {"ha": False})
        change["metadata"]["labels"] = {"a": "b"}
        change["status"] = {"status": "ignored"}
        site = await store.update(change)
        assert site["metadata"]["generation"] == 1
        assert site["metadata"]["labels"] == {"a": "b"}
        assert site["status"] == {"status": "Ready"}

        # Spec changes: generation bumps; labels absent means removed.
        site["spec"] = {"ha": True}
        del site["metadata"]["labels"]
        uid, created_at = site["metadata"]["uid"], site["metadata"]["creationTimestamp"]
        site = await store.update(site)
        assert site["metadata"]["generation"] == 2
        assert "labels" not in site["metadata"]
        assert (site["metadata"]["uid"], site["metadata"]["creationTimestamp"]) == (
            uid,
            created_at,
        )

        # update_status touches nothing but status.
        stale = dict(site, spec={"ha": "ignored"}, status={"status": "Pending"})
        site = await store.update_status(stale)
        assert site["spec"] == {"ha": True}
        assert site["status"] == {"status": "Pending"}

        # Stale resourceVersion: Conflict, for both.
        old = dict(site, metadata=dict(site["metadata"], resourceVersion="1"))
        with pytest.raises(Conflict):
            await store.update(old)
        with pytest.raises(Conflict):
            await store.update_status(old)
        # No resourceVersion: last writer wins.
        blind = new_resource("Site", "west", {"ha": False})
        assert (await store.update(blind))["metadata"]["generation"] == 3

        # A no-op write is not a new version (as on the API server).
        version = await store.current_version()
        same = await store.update(await store.get("Site", "west"))
        assert same["metadata"]["resourceVersion"] == str(version)
        assert await store.current_version() == version

        with pytest.raises(NotFound):
            await store.update(new_resource("Site", "nope"))
        with pytest.raises(NotFound):
            await store.update_status(new_resource("Site", "nope"))

    with SqliteStore(tmp_path / "ns.db") as store:
        asyncio.run(main(store))


def test_results_are_deep_copies(tmp_path: Path) -> None:
    async def main(store: SqliteStore) -> None:
        mine = new_resource("Site", "west", {"nested": {"x": 1}})
        created = await store.create(mine)
        assert "uid" not in mine["metadata"]  # the caller's dict is not modified
        mine["spec"]["nested"]["x"] = 2
        created["spec"]["nested"]["x"] = 3
        got = await store.get("Site", "west")
        got["spec"]["nested"]["x"] = 4
        (await store.list("Site"))[0]["spec"]["nested"]["x"] = 5
        assert (await store.get("Site", "west"))["spec"] == {"nested": {"x": 1}}

    with SqliteStore(tmp_path / "ns.db") as store:
        asyncio.run(main(store))


class UsedUp(Exception):
    pass


def _redeem_once(grant: dict[str, Any]) -> int:
    status = grant.setdefault("status", {})
    used = int(status.get("redemptions", 0))
    if used >= grant["spec"]["redemptionsAllowed"]:
        raise UsedUp(grant["metadata"]["name"])
    status["redemptions"] = used + 1
    return used + 1


def test_mutate_status(tmp_path: Path) -> None:
    async def main(store: SqliteStore) -> None:
        await store.create(new_resource("AccessGrant", "g", {"redemptionsAllowed": 1}))
        assert await store.mutate_status("AccessGrant", "g", _redeem_once) == 1
        before = await store.get("AccessGrant", "g")
        version = await store.current_version()
        assert before["status"] == {"redemptions": 1}
        assert before["metadata"]["resourceVersion"] == str(version)

        with pytest.raises(UsedUp):
            await store.mutate_status("AccessGrant", "g", _redeem_once)

        def scribble_then_fail(grant: dict[str, Any]) -> None:
            grant["status"]["redemptions"] = 99
            raise KeyError("boom")

        with pytest.raises(KeyError, match="boom"):
            await store.mutate_status("AccessGrant", "g", scribble_then_fail)
        assert await store.get("AccessGrant", "g") == before
        assert await store.current_version() == version

        def not_json(grant: dict[str, Any]) -> None:
            grant["status"]["when"] = object()

        with pytest.raises(TypeError):
            await store.mutate_status("AccessGrant", "g", not_json)
        assert await store.get("AccessGrant", "g") == before

        def touch_spec(grant: dict[str, Any]) -> str:
            grant["spec"] = {"redemptionsAllowed": 1000}
            grant["status"]["note"] = "x"
            return "done"

        assert await store.mutate_status("AccessGrant", "g", touch_spec) == "done"
        after = await store.get("AccessGrant", "g")
        assert after["spec"] == {"redemptionsAllowed": 1}  # only status is written
        assert after["status"] == {"redemptions": 1, "note": "x"}
        with pytest.raises(NotFound):
            await store.mutate_status("AccessGrant", "nope", _redeem_once)

    with SqliteStore(tmp_path / "ns.db") as store:
        asyncio.run(main(store))


def _redeem_many(path: str, attempts: int) -> int:
    async def main(store: SqliteStore) -> int:
        won = 0
        for _ in range(attempts):
            try:
                await store.mutate_status("AccessGrant", "grant", _redeem_once)
            except UsedUp:
                continue
            won += 1
        return won

    with SqliteStore(Path(path)) as store:
        return asyncio.run(main(store))


def test_mutate_status_is_exact_across_processes(tmp_path: Path) -> None:
    db = tmp_path / "ns.db"
    with SqliteStore(db) as store:
        grant = new_resource("AccessGrant", "grant", {"redemptionsAllowed": 100})
        asyncio.run(store.create(grant))

    pool = SPAWN.Pool(8)
    try:
        wins = pool.starmap(_redeem_many, [(str(db), 100)] * 8)
    finally:
        pool.close()
        pool.join()

    assert sum(wins) == 100
    with SqliteStore(db) as store:
        final = asyncio.run(store.get("AccessGrant", "grant"))
        assert final["status"]["redemptions"] == 100
        assert asyncio.run(store.current_version()) == 101


async def _take(store: SqliteStore, count: int, **kwargs: Any) -> list[WatchEvent]:
    events: list[WatchEvent] = []
    async with asyncio.timeout(5), aclosing(store.watch(**kwargs)) as stream:
        async for event in stream:
            events.append(event)
            if len(events) == count:
                break
    return events


def test_watch_own_writes_and_resume(tmp_path: Path) -> None:
    async def main(store: SqliteStore) -> None:
        await store.create(new_resource("Site", "early"))
        watcher = asyncio.create_task(_take(store, 4, kind="Site"))
        await asyncio.sleep(0.05)  # the watch is now waiting, not just starting
        started = time.monotonic()
        link = await store.create(new_resource("Link", "l"))  # another kind: filtered out
        site = await store.update(new_resource("Site", "early", {"ha": True}))
        await store.create(new_resource("Site", "late"))
        await store.delete("Site", "early")
        events = await watcher
        assert time.monotonic() - started < 1.0
        assert [(e.type, e.resource["metadata"]["name"]) for e in events] == [
            ("ADDED", "early"),
            ("MODIFIED", "early"),
            ("ADDED", "late"),
            ("DELETED", "early"),
        ]
        assert [e.version for e in events] == [1, 3, 4, 5]
        assert events[1].resource == site
        assert events[3].resource["spec"] == {"ha": True}  # the last body
        assert all(e.resource["metadata"]["resourceVersion"] == str(e.version) for e in events)

        # Resume after version 3: only what came later, all kinds.
        resumed = await _take(store, 2, since=3)
        assert [(e.version, e.type) for e in resumed] == [(4, "ADDED"), (5, "DELETED")]
        assert (await _take(store, 1, since=1))[0].resource == link

    with SqliteStore(tmp_path / "ns.db") as store:
        asyncio.run(main(store))


def test_watch_since_older_than_kept_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_module, "KEEP_EVENTS", 3)
    monkeypatch.setattr(sqlite_module, "_PRUNE_EVERY", 1)

    async def main(store: SqliteStore) -> None:
        for index in range(10):
            await store.create(new_resource("Site", f"s{index}"))
        events = await _take(store, 3, since=2)
        assert [e.version for e in events] == [8, 9, 10]

    with SqliteStore(tmp_path / "ns.db") as store:
        asyncio.run(main(store))


def test_watch_ends_when_store_closes(tmp_path: Path) -> None:
    async def main(store: SqliteStore) -> None:
        async def drain() -> int:
            return len([event async for event in store.watch()])

        task = asyncio.create_task(drain())
        await store.create(new_resource("Site", "a"))
        await asyncio.sleep(0.05)
        store.close()
        async with asyncio.timeout(2):
            assert await task == 1

    store = SqliteStore(tmp_path / "ns.db")
    try:
        asyncio.run(main(store))
    finally:
        store.close()  # idempotent


def _create_elsewhere(path: str, name: str, done: Any) -> None:
    with SqliteStore(Path(path)) as store:
        asyncio.run(store.create(new_resource("Site", name)))
    done.put(time.monotonic())  # CLOCK_MONOTONIC is system-wide on Linux


def test_watch_sees_another_process(tmp_path: Path) -> None:
    db = tmp_path / "ns.db"
    done = SPAWN.Queue()

    async def main(store: SqliteStore) -> tuple[WatchEvent, float]:
        async with asyncio.timeout(30), aclosing(store.watch("Site")) as stream:
            writer = SPAWN.Process(target=_create_elsewhere, args=(str(db), "remote", done))
            writer.start()
            try:
                event = await anext(stream)
                return event, time.monotonic()
            finally:
                await asyncio.to_thread(writer.join)

    with SqliteStore(db) as store:
        event, seen_at = asyncio.run(main(store))
    written_at = done.get(timeout=10)
    done.close()
    done.join_thread()
    assert (event.type, event.resource["metadata"]["name"]) == ("ADDED", "remote")
    assert seen_at - written_at < 1.0


def test_watch_sees_another_connection_in_process(tmp_path: Path) -> None:
    async def main(reader: SqliteStore, writer: SqliteStore) -> None:
        watcher = asyncio.create_task(_take(reader, 1))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        await writer.create(new_resource("Site", "x"))
        assert (await watcher)[0].resource["metadata"]["name"] == "x"
        assert time.monotonic() - started < 1.0

    with SqliteStore(tmp_path / "ns.db") as reader, SqliteStore(tmp_path / "ns.db") as writer:
        asyncio.run(main(reader, writer))


def test_survives_reopen_and_is_private(tmp_path: Path) -> None:
    db = tmp_path / "ns.db"
    with SqliteStore(db) as store:
        created = asyncio.run(store.create(new_resource("Site", "west", {"ha": True})))
        assert _mode(db) == 0o600
        assert _mode(Path(f"{db}-wal")) == 0o600  # SQLite copies the database's mode
        with closing(sqlite3.connect(db)) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with SqliteStore(db) as store:
        assert asyncio.run(store.get("Site", "west")) == created
        assert asyncio.run(store.current_version()) == 1
        updated = asyncio.run(store.update(new_resource("Site", "west")))
        assert updated["metadata"]["resourceVersion"] == "2"
    assert _mode(db) == 0o600
