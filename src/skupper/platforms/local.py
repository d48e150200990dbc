"""The local platform's files: where a namespace's state lives on this machine.

    $XDG_DATA_HOME/skupper/namespaces/<ns>/     0700
        store.db             resources and redemption counts (SQLite, WAL)
        secrets/<name>/      tls.crt, tls.key, ca.crt (0600 files, 0700 folders)
        runtime/daemon.pid   the daemon's pid
        runtime/daemon.lock  held (flock) by the running daemon for its lifetime
        runtime/ports.json   ports chosen at first start, reused after restarts
        logs/daemon.log
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from skupper.base.errors import SkupperError

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
        raise SkupperError(
            f'Invalid namespace "{namespace}"',
            "a namespace is lower-case letters, digits and '-', at most 63 characters",
        )
    return namespace


@dataclass(frozen=True)
class NamespacePaths:
    root: Path

    @classmethod
    def for_namespace(cls, namespace: str) -> NamespacePaths:
        return cls(data_home() / "namespaces" / check_namespace(namespace))

    @property
    def namespace(self) -> str:
        return self.root.name

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
