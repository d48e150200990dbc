"""A damaged store.db: one clear line from every command, and delete still works.

Issue 9, point 7. The store is damaged the ways a disk, a crash or a person damage it:
random bytes, a truncated file, an emptied file, a directory in its place. Every
command says what is broken, where, and what to do, in one line with exit 1; `site
delete` still removes the namespace (and stops its daemon); a daemon that finds its
store damaged says so once in its log and exits 78 instead of failing in a loop.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests_support import Skupper, alive, one_error_line, wait_for

HINT = 'Move it aside, or run "skupper site delete" to remove the namespace.'
EXIT_UNUSABLE = 78


def _random_bytes(store: Path) -> str:
    store.write_bytes(os.urandom(max(store.stat().st_size, 8192)))
    return "the file is not a SQLite database (file is not a database)"


def _truncated(store: Path) -> str:
    data = store.read_bytes()
    store.write_bytes(data[: len(data) // 2])
    return "the database is damaged"


def _emptied(store: Path) -> str:
    store.write_bytes(b"")
    return "the file is empty although the site has state"


def _directory(store: Path) -> str:
    store.unlink()
    store.mkdir()
    (store / "something").write_text("x")
    return "it is a directory, not a file"


DAMAGE: dict[str, Callable[[Path], str]] = {
    "random-bytes": _random_bytes,
    "truncated": _truncated,
    "emptied": _emptied,
    "directory": _directory,
}


def _site_with_state(skupper: Skupper) -> Path:
    """A site with a grant, a listener and a link, stopped cleanly (its WAL folded in)."""
    skupper.run("site", "create", "west", "--enable-link-access")
    skupper.run("access-token", "issue", str(skupper.home / "first.yaml"))
    skupper.run("listener", "create", "backend", "9999", "--wait", "configured")
    skupper.run("system", "stop")
    store = skupper.namespace_dir() / "store.db"
    for leftover in ("store.db-wal", "store.db-shm"):
        (skupper.namespace_dir() / leftover).unlink(missing_ok=True)
    return store


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_every_command_says_in_one_line_that_the_store_is_damaged(
    skupper: Skupper, damage: str
) -> None:
    store = _site_with_state(skupper)
    reason = DAMAGE[damage](store)
    token = skupper.home / "token.yaml"
    commands = (
        ("site", "status"),
        ("site", "update", "--enable-link-access"),
        ("link", "status"),
        ("access-token", "issue", str(token)),
        ("access-grant", "status"),
        ("listener", "status"),
        ("connector", "status"),
        ("system", "start"),
        ("site", "create", "again"),
        ("access-token", "redeem", str(skupper.home / "first.yaml")),
        ("link", "delete", "any"),
        ("listener", "delete", "backend"),
    )
    for command in commands:
        done = skupper.fails(*command)
        assert done.returncode == 1, (command, done.stderr)
        line = one_error_line(done, f"Cannot open the site's store at {store}: ", reason, HINT)
        assert "Traceback" not in done.stderr, command
        assert line.endswith(HINT), line
    assert not token.exists()
    assert skupper.daemon_pid() is None  # `system start` started nothing


@pytest.mark.parametrize("damage", ["random-bytes", "directory"])
def test_site_delete_removes_a_namespace_whose_store_is_damaged(
    skupper: Skupper, damage: str
) -> None:
    store = _site_with_state(skupper)
    DAMAGE[damage](store)
    done = skupper.run("site", "delete")
    assert done.stdout.splitlines()[-1].startswith(
        'The site of namespace "default" is deleted (its store could not be read: ')
    assert done.stderr == ""
    assert not skupper.namespace_dir().exists()
    skupper.fails("site", "status")  # nothing left: "no site", as for a new namespace
    skupper.run("site", "create", "west")  # and the namespace can be used again


def test_site_delete_stops_a_running_daemon_even_when_the_store_is_damaged(
    skupper: Skupper,
) -> None:
    skupper.run("site", "create", "west")
    pid = skupper.daemon_pid()
    assert pid is not None
    store = skupper.namespace_dir() / "store.db"
    store.rename(store.with_name("store.moved"))
    store.mkdir()
    skupper.run("site", "delete")
    wait_for("the daemon to stop", lambda: not alive(pid), 15)
    assert not skupper.namespace_dir().exists()


def test_a_daemon_whose_store_is_damaged_says_so_once_and_exits_78(skupper: Skupper) -> None:
    store = _site_with_state(skupper)
    _random_bytes(store)
    log = skupper.namespace_dir() / "logs" / "daemon.log"
    before = log.read_text()
    done = subprocess.run(
        [sys.executable, "-m", "skupper.daemon", "--namespace", "default"],
        env=skupper.env, capture_output=True, text=True, timeout=30, check=False,
    )
    assert done.returncode == EXIT_UNUSABLE, done.stderr
    assert done.stderr == ""  # said in the log, not on a terminal
    new = log.read_text()[len(before):].splitlines()
    errors = [line for line in new if " ERROR " in line or " CRITICAL " in line]
    assert len(errors) == 1, new
    assert f"Cannot open the site's store at {store}: the file is not a SQLite database" \
        in errors[0]
    assert "Traceback" not in "\n".join(new)
    assert not (skupper.namespace_dir() / "runtime" / "daemon.pid").exists()


def test_a_running_daemon_whose_store_gets_damaged_stops_once(skupper: Skupper) -> None:
    skupper.run("site", "create", "west", "--enable-link-access")
    pid = skupper.daemon_pid()
    assert pid is not None
    store = skupper.namespace_dir() / "store.db"
    # Fold the WAL into the file (the daemon's cached pages must not hide the damage),
    # then overwrite the file in place, under the daemon's open connection.
    with sqlite3.connect(store) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    with open(store, "r+b") as handle:
        handle.write(os.urandom(store.stat().st_size))
    wait_for("the daemon to stop", lambda: not alive(pid), 20)
    log = (skupper.namespace_dir() / "logs" / "daemon.log").read_text().splitlines()
    errors = [line for line in log if " ERROR " in line or " CRITICAL " in line]
    assert len(errors) == 1, log[-10:]
    assert f"Cannot use the site's store at {store}: the file is not a SQLite database" \
        in errors[0]
    assert log[-1].endswith("site daemon stopped (exit status 78: nothing to serve from)")
    one_error_line(skupper.fails("site", "status"), "Cannot open the site's store at")


def test_site_start_reports_why_the_daemon_exited_in_one_line(skupper: Skupper) -> None:
    skupper.run("site", "create", "west")
    skupper.run("system", "stop")
    logs = skupper.namespace_dir() / "logs"
    shutil.rmtree(logs)
    logs.mkdir(mode=0o700)
    (logs / "daemon.log").mkdir()  # the daemon cannot open its log
    done = skupper.fails("system", "start", "--timeout", "60s")
    line = one_error_line(done, 'Site "west" failed: the site daemon exited: ',
                          f"Cannot open the site daemon's log at {logs / 'daemon.log'}",
                          "Is a directory")
    assert "did not complete within" not in line
    assert skupper.daemon_pid() is None


def test_damaged_folders_beside_the_store_are_one_line_too(skupper: Skupper) -> None:
    skupper.run("site", "create", "west")
    skupper.run("system", "stop")
    lock = skupper.namespace_dir() / "runtime" / "daemon.lock"
    lock.unlink()
    lock.mkdir()
    one_error_line(skupper.fails("site", "status"),
                   f"Cannot tell whether the site daemon runs: {lock} cannot be opened")
    one_error_line(skupper.fails("system", "start"), "Move it aside")
    lock.rmdir()
    namespaces = skupper.home / "data" / "skupper" / "namespaces"
    shutil.rmtree(namespaces)
    namespaces.write_text("not a folder")
    one_error_line(skupper.fails("site", "create", "west"),
                   f"Cannot create the site's folder {namespaces}")


def test_the_systemd_unit_does_not_restart_a_daemon_that_cannot_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from skupper.platforms import local_daemon
    from skupper.platforms.local import NamespacePaths

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    local_daemon._write_unit(NamespacePaths(tmp_path / "namespaces" / "west"))
    unit = (tmp_path / "systemd" / "user" / "skupper-site-west.service").read_text()
    assert "Restart=on-failure" in unit
    assert f"RestartPreventExitStatus={EXIT_UNUSABLE}" in unit
