"""Cross-process change pings, so a watcher wakes when another process commits.

SQLite tells nobody about commits. Each watching process binds a Linux abstract Unix
datagram socket (no file, so no path-length limit and nothing to clean up on a
crash) and registers its name as an empty file in ``<db>.watchers/``. A writer, after
each commit, sends one byte to every registered name; a name nobody listens on any
more is unregistered by the first writer that finds it dead. Watchers still re-check
the database now and then, so a lost ping only delays, never loses, an event.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

_PREFIX = "skupper-watch-"


def registry_for(database: Path) -> Path:
    return database.with_name(database.name + ".watchers")


class Subscription:
    """One process's socket; readable whenever some writer committed."""

    def __init__(self, registry: Path) -> None:
        registry.mkdir(mode=0o700, exist_ok=True)
        self._entry = registry / os.urandom(8).hex()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.bind("\0" + _PREFIX + self._entry.name)
        self._entry.touch(mode=0o600)

    def drain(self) -> None:
        """Swallow pending pings: one re-read of the database answers them all."""
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while self.sock.recv(64):
                pass

    def close(self) -> None:
        self._entry.unlink(missing_ok=True)
        self.sock.close()


class Notifier:
    """Pings every registered watcher; cheap enough to call after every commit."""

    def __init__(self, registry: Path) -> None:
        self._registry = registry
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)

    def notify(self) -> None:
        try:
            names = os.listdir(self._registry)
        except FileNotFoundError:
            return
        for name in names:
            try:
                self._sock.sendto(b"!", "\0" + _PREFIX + name)
            except (ConnectionRefusedError, FileNotFoundError):
                # Its process is gone (even a kill -9 frees an abstract name).
                (self._registry / name).unlink(missing_ok=True)
            except (BlockingIOError, OSError):
                pass  # its queue is full: it has pings to read already

    def close(self) -> None:
        self._sock.close()
