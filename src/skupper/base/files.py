"""Atomic, private file writes: a reader never sees half a file, nobody else reads it.

Tokens and keys are secrets, so files are 0600 and folders 0700 from the moment they
exist (the mode is set on the temporary file before any byte is written).

A write only ever replaces a regular file (or creates one): a device node, a FIFO, a
socket, a folder or a symbolic link at the destination is refused, so writing as root
to ``/dev/null`` or ``/proc/self/fd/1`` never turns them into files, and nothing is
ever written through a link into a file elsewhere. The data goes into a new file
opened with ``O_EXCL`` and is renamed into place; a rename replaces the name itself and
never follows it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) as 0700 folders; tighten it if it already exists."""
    path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    os.chmod(path, PRIVATE_DIR)
    return path


REGULAR_FILE = "a regular file"
SYMBOLIC_LINK = "a symbolic link"
DIRECTORY = "a directory"
_KINDS = (
    (stat.S_ISREG, REGULAR_FILE),
    (stat.S_ISLNK, SYMBOLIC_LINK),
    (stat.S_ISDIR, DIRECTORY),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class NotARegularFile(OSError):
    """The destination of a write exists and is not a regular file."""

    def __init__(self, path: Path, kind: str) -> None:
        why = f"it is {kind}" if kind in (SYMBOLIC_LINK, DIRECTORY) \
            else f"it is not a regular file ({kind})"
        super().__init__(errno.EEXIST, why, str(path))
        self.kind = kind


def regular_file_kind(path: Path) -> str | None:
    """What is at ``path`` itself (a link is not followed): None if nothing, else its kind."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    for test, kind in _KINDS:
        if test(mode):
            return kind
    return "not a file"


def check_replaceable(path: Path) -> None:
    """Raise NotARegularFile unless ``path`` is absent or a regular file."""
    kind = regular_file_kind(path)
    if kind not in (None, REGULAR_FILE):
        raise NotARegularFile(path, kind)


def write_private(path: Path, data: bytes | str, mode: int = PRIVATE_FILE) -> None:
    """Write ``data`` to ``path`` atomically: temp file in the same folder, fsync, rename.

    NotARegularFile if something other than a regular file is at ``path`` (checked
    before and once more just before the rename).
    """
    check_replaceable(path)
    payload = data.encode() if isinstance(data, str) else data
    folder = path.parent
    tmp = folder / f".{path.name}.tmp-{os.getpid()}-{os.urandom(4).hex()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        check_replaceable(path)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    # The rename is durable only once the folder entry is on disk.
    dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
