"""The local ("systemd") platform as the CLI sees it: a store, a daemon, their files."""

from __future__ import annotations

from typing import TYPE_CHECKING

from skupper.base.errors import SkupperError
from skupper.platforms import local_daemon
from skupper.platforms.local import NamespacePaths

OBSERVER_FILE = "observer.json"

if TYPE_CHECKING:
    import subprocess
    from pathlib import Path

    from skupper.store.secrets import FileSecretStore
    from skupper.store.sqlite import SqliteStore
    from skupper.store.sqlite_blocking import BlockingSqliteStore


class LocalPlatform:
    name = "systemd"
    # A short command may use open_blocking_store() and skip asyncio altogether.
    has_blocking_store = True

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.paths = NamespacePaths.for_namespace(namespace)
        self._started: subprocess.Popen[bytes] | None = None

    def has_state(self) -> bool:
        return self.paths.store.exists()

    def open_store(self) -> SqliteStore:
        return self.paths.open_store()

    def open_blocking_store(self) -> BlockingSqliteStore:
        """The same store, for a command that uses it from its own thread only."""
        return self.paths.open_store(blocking=True)

    def open_secrets(self) -> FileSecretStore:
        from skupper.store.secrets import FileSecretStore

        return FileSecretStore(self.paths.secrets)

    def running(self) -> bool:
        return local_daemon.daemon_pid(self.paths) is not None

    def start(self) -> None:
        self._started = local_daemon.start_daemon(self.paths)

    def daemon_exited(self) -> bool:
        """The daemon this command started has exited, and no other one runs."""
        started = self._started
        return started is not None and started.poll() is not None and not self.running()

    def not_running_error(self) -> SkupperError:
        return SkupperError(
            "The site is stopped",
            f'the site daemon for namespace "{self.namespace}" is not running',
            f'Start it with "skupper system start -n {self.namespace}".',
        )

    @property
    def stopped_message(self) -> str:
        reason = local_daemon.last_failure(self.paths)
        return f"the site daemon exited: {reason}" if reason else "the site daemon stopped"

    def stop(self, *, remove_unit: bool = False) -> bool:
        return local_daemon.stop_daemon(self.paths, remove_unit=remove_unit)

    def remove_state(self) -> None:
        import shutil

        shutil.rmtree(self.paths.root, ignore_errors=True)

    @property
    def log_file(self) -> str:
        return str(self.paths.log_file)

    def default_link_access_host(self) -> str | None:
        """The host the daemon advertises when no --link-access-host is given."""
        import socket

        return socket.getfqdn()

    def observer_file(self) -> Path | None:
        """Where the daemon says how to reach its observer (metrics, console)."""
        return self.paths.runtime / OBSERVER_FILE
