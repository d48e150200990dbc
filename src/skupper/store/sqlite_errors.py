"""Why a SQLite file cannot serve as a store, said as one line for the user.

A damaged file (random bytes, truncation, a directory or FIFO in its place) surfaces
in sqlite3 as whichever error the first query meets; these classify it once, so every
command and the daemon say the same thing: what is broken, where, and what to do.
"""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

from skupper.base.errors import SkupperError
from skupper.store.interface import StoreError


class StoreUnusable(SkupperError, StoreError):
    """The database file is damaged, not a database, or not a file: no retry helps."""

    def __init__(self, path: Path, reason: str, *, opening: bool = True) -> None:
        verb = "open" if opening else "use"
        super().__init__(
            f"Cannot {verb} the site's store at {path}",
            reason,
            'Move it aside, or run "skupper site delete" to remove the namespace.',
        )
        self.path = path
        self.reason = reason


class StoreBusy(SkupperError, StoreError):
    """Another process held the database's write lock for the whole busy timeout."""

    def __init__(self, path: Path, seconds: float) -> None:
        super().__init__(
            f"The site's store at {path} stayed locked for {seconds:g} s",
            "another process holds it (database is locked)",
            "Try again; a site daemon that is suspended (kill -STOP) holds it until it "
            "is resumed.",
        )


def unusable_reason(path: Path, error: BaseException) -> str | None:
    """Why ``error`` means the file at ``path`` cannot serve as a store; None if it may pass.

    A locked or busy database is another process at work, not damage; errors that
    come from the store's own SQL (integrity, programming) are bugs, not damage.
    """
    if isinstance(error, OSError):
        if path.is_dir():
            return "it is a directory, not a file"
        return f"{error.strerror or type(error).__name__}".lower()
    if type(error) not in (sqlite3.DatabaseError, sqlite3.OperationalError):
        return None
    text = str(error)
    if "locked" in text or "busy" in text:
        return None
    if path.is_dir():
        return "it is a directory, not a file"
    for fragment, meaning in _DAMAGE:
        if fragment in text:
            return f"{meaning} ({text})"
    return f"SQLite cannot read it ({text})" if type(error) is sqlite3.DatabaseError else None


_DAMAGE = (
    ("not a database", "the file is not a SQLite database"),
    ("malformed", "the database is damaged"),
    ("unable to open", "the file cannot be opened"),
    ("disk I/O error", "reading the file failed"),
    ("readonly", "the file is read-only"),
)


def check_regular_file(path: Path) -> None:
    """A directory, FIFO or device in the database's place is refused before SQLite opens it."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return
    except OSError as error:
        raise StoreUnusable(path, unusable_reason(path, error) or str(error)) from None
    if stat.S_ISDIR(mode):
        raise StoreUnusable(path, "it is a directory, not a file")
    if not stat.S_ISREG(mode):
        raise StoreUnusable(path, "it is not a regular file")
