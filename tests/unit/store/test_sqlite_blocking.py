"""The blocking face of the store: same file, same rules, woken by other writers' pings."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from skupper.resources import new_resource
from skupper.store.interface import AlreadyExists, NotFound
from skupper.store.sqlite import SqliteStore
from skupper.store.sqlite_blocking import BlockingSqliteStore, WaitTimedOut


def test_both_faces_read_what_the_other_wrote(tmp_path: Path) -> None:
    path = tmp_path / "ns.db"
    with BlockingSqliteStore(path) as blocking:
        created = blocking.create(new_resource("AccessGrant", "g1", {"redemptionsAllowed": 1}))
        assert created["metadata"]["uid"] and created["metadata"]["resourceVersion"] == "1"
        with pytest.raises(AlreadyExists):
            blocking.create(new_resource("AccessGrant", "g1"))

        async def from_async() -> None:
            with SqliteStore(path) as store:
                assert (await store.get("AccessGrant", "g1"))["spec"] == {"redemptionsAllowed": 1}
                await store.create(new_resource("AccessGrant", "g2"))

        asyncio.run(from_async())
        assert [g["metadata"]["name"] for g in blocking.list("AccessGrant")] == ["g1", "g2"]
        blocking.delete("AccessGrant", "g1")
        with pytest.raises(NotFound):
            blocking.get("AccessGrant", "g1")
        with pytest.raises(NotFound):
            blocking.delete("AccessGrant", "g1")


def test_a_wait_is_woken_by_another_writers_ping(tmp_path: Path) -> None:
    path = tmp_path / "ns.db"
    # A poll this slow cannot finish the wait in time: only the ping can.
    with BlockingSqliteStore(path, poll_interval=60) as blocking:
        blocking.create(new_resource("AccessGrant", "g"))

        def daemon_fills_it_in() -> None:
            async def write() -> None:
                await asyncio.sleep(0.2)
                with SqliteStore(path) as store:
                    await store.mutate_status("AccessGrant", "g",
                                              lambda g: g.setdefault("status", {}).update(
                                                  code="x"))
            asyncio.run(write())

        writer = threading.Thread(target=daemon_fills_it_in)
        writer.start()
        try:
            done = blocking.wait_for("AccessGrant", "g",
                                     lambda g: bool((g.get("status") or {}).get("code")), 10)
        finally:
            writer.join()
        assert done is not None and done["status"]["code"] == "x"


def test_a_wait_times_out_with_the_last_state_or_stops_when_asked(tmp_path: Path) -> None:
    with BlockingSqliteStore(tmp_path / "ns.db", poll_interval=0.05) as blocking:
        blocking.create(new_resource("AccessGrant", "g"))
        with pytest.raises(WaitTimedOut) as timed_out:
            blocking.wait_for("AccessGrant", "g", lambda _g: False, 0.3)
        assert timed_out.value.last is not None
        assert timed_out.value.last["metadata"]["name"] == "g"
        asked: list[bool] = []

        def stop() -> bool:
            asked.append(True)
            return len(asked) >= 2

        assert blocking.wait_for("AccessGrant", "g", lambda _g: False, 30, stop=stop,
                                 check_every=0.05) is None
        with pytest.raises(NotFound):
            blocking.wait_for("AccessGrant", "missing", lambda _g: True, 1)
