"""The local platform's files: where a namespace's state lives on this machine.

    $XDG_DATA_HOME/skupper/                     0700 (so is namespaces/)
      namespaces/<ns>/                          0700
        store.db             resources and redemption counts (SQLite, WAL)
        secrets/<name>/      tls.crt, tls.key, ca.crt (0600 files, 0700 folders)
        runtime/daemon.pid   the daemon's pid
        runtime/daemon.lock  held (flock) by the running daemon for its lifetime
        runtime/ports.json   ports chosen at first start, reused after restarts
        logs/daemon.log      the daemon's log, rotated (daemon.log.1 ...), 0600
        logs/daemon-stderr.log  what the daemon printed before its log was open
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Literal, NamedTuple, overload

from skupper.base.errors import SkupperError, UsageError
from skupper.base.files import ensure_private_dir

if TYPE_CHECKING:
    from skupper.store.sqlite import SqliteStore
    from skupper.store.sqlite_blocking import BlockingSqliteStore

_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def data_home() -> Path:
    xdg = os.environ.get("XDG_DATA_HOME")
    if xdg:
        return Path(xdg) / "skupper"
    if os.geteuid() == 0:
        return Path("/var/lib/skupper")
    return Path.home() / ".local" / "share" / "skupper"


def check_namespace(namespace: str) -> str:
    if len(namespace) > 63 or not _NAMESPACE.fullmatch(namespace):
        raise UsageError(  # a bad command line, like every invalid name (exit 2)
            f'Invalid namespace "{namespace}"',
            "a namespace is lower-case letters, digits and '-', at most 63 characters",
        )
    return namespace


# A NamedTuple, not a dataclass: dataclasses imports inspect, a tenth of a quick command.
class NamespacePaths(NamedTuple):
    root: Path

    @classmethod
    def for_namespace(cls, namespace: str) -> NamespacePaths:
        return cls(data_home() / "namespaces" / check_namespace(namespace))

    @property
    def namespace(self) -> str:
        return self.root.name

    def make_root(self) -> Path:
        """Create the namespace folder; it, ``namespaces/`` and ``skupper/`` are 0700."""
        namespaces = self.root.parent
        for folder in (namespaces.parent, namespaces, self.root):
            try:
                ensure_private_dir(folder)
            except OSError as error:
                raise SkupperError(
                    f"Cannot create the site's folder {folder}",
                    error.strerror or str(error),
                    "Move whatever is in its place aside.",
                ) from None
        return self.root

    @overload
    def open_store(self, *, blocking: Literal[False] = False) -> SqliteStore: ...

    @overload
    def open_store(self, *, blocking: Literal[True]) -> BlockingSqliteStore: ...

    def open_store(self, *, blocking: bool = False) -> SqliteStore | BlockingSqliteStore:
        """The namespace's store; StoreUnusable (one line) when the file is damaged.

        ``blocking``: the face for a short command on one thread (no asyncio).
        """
        from skupper.store.sqlite_errors import StoreUnusable

        self.make_root()
        if self._store_emptied():
            raise StoreUnusable(self.store, "the file is empty although the site has state "
                                            "(it was truncated or replaced)")
        if blocking:
            from skupper.store.sqlite_blocking import BlockingSqliteStore

            return BlockingSqliteStore(self.store)
        from skupper.store.sqlite import SqliteStore

        return SqliteStore(self.store)

    def _store_emptied(self) -> bool:
        # A new store is empty only until its schema is written, before any secret
        # exists; an empty one beside secrets lost everything it held.
        try:
            empty = self.store.stat().st_size == 0
            return empty and any(self.secrets.iterdir())
        except OSError:
            return False

    @property
    def store(self) -> Path:
        return self.root / "store.db"

    @property
    def secrets(self) -> Path:
        return self.root / "secrets"

    @property
    def runtime(self) -> Path:
        return self.root / "runtime"

    @property
    def pid_file(self) -> Path:
        return self.runtime / "daemon.pid"

    @property
    def lock_file(self) -> Path:
        return self.runtime / "daemon.lock"

    @property
    def ports_file(self) -> Path:
        return self.runtime / "ports.json"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def log_file(self) -> Path:
        return self.logs / "daemon.log"

    @property
    def stderr_file(self) -> Path:
        return self.logs / "daemon-stderr.log"
