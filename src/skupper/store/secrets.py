"""Secrets of one namespace as private folders of files, for the local platform.

Secret ``name`` is ``root/name/``: a 0700 folder with one 0600 file per key (``tls.crt``,
``tls.key``, ``ca.crt``...), so TLS code can hand file paths to OpenSSL.

``root/name`` is a symlink to a hidden version folder ``root/.name.<random>``. ``put``
fills a new version folder beside it and swaps the symlink with one rename, so a reader
sees the old keys or the new ones, never a mix and never a gap (two renames of plain
folders would leave a moment with no secret at all). ``get`` reads every key through one
folder descriptor, and retries if a concurrent ``put`` removed that version meanwhile.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from skupper.base.files import ensure_private_dir, write_private
from skupper.resources.model import valid_name
from skupper.store.interface import NotFound, StoreError

# Kubernetes Secret data keys.
_KEY = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")


class FileSecretStore:
    """The ``SecretStore`` of one namespace, kept under the folder ``root``."""

    def __init__(self, root: Path) -> None:
        self._root = Path(root)

    def path(self, name: str) -> Path:
        """The secret's folder (it may not exist yet)."""
        _check_name(name)
        return self._root / name

    def file(self, name: str, key: str) -> Path:
        """The file holding ``key`` of secret ``name`` (it may not exist yet)."""
        _check_key(key)
        return self.path(name) / key

    async def get(self, name: str) -> dict[str, bytes]:
        folder = self.path(name)
        for _ in range(100):
            try:
                fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except FileNotFoundError:
                if os.path.lexists(folder):
                    continue  # the link moved on and its old version went meanwhile
                raise NotFound("Secret", name) from None
            except NotADirectoryError:
                raise NotFound("Secret", name) from None
            try:
                data = {key: _read_at(fd, key) for key in os.listdir(fd)}
                # A version is removed only after the link moved off it: if the link still
                # names this folder, nothing of it was removed while we read.
                current = _same_file(os.fstat(fd), os.stat(folder))
            except FileNotFoundError:
                current = False
            finally:
                os.close(fd)
            if current:
                return data
        raise StoreError(f'Secret "{name}" kept changing while being read')

    async def exists(self, name: str) -> bool:
        return self.path(name).is_dir()

    async def put(self, name: str, data: dict[str, bytes]) -> None:
        link = self.path(name)
        for key in data:
            _check_key(key)
        ensure_private_dir(self._root)
        token = os.urandom(6).hex()
        version = self._root / f".{name}.{token}"
        os.mkdir(version, 0o700)
        try:
            os.chmod(version, 0o700)
            for key, value in data.items():
                write_private(version / key, value)
            old = _target(link)
            tmp_link = self._root / f".{name}.{token}.link"
            os.symlink(version.name, tmp_link)
            try:
                os.replace(tmp_link, link)  # the atomic swap
            except BaseException:
                os.unlink(tmp_link)
                raise
        except BaseException:
            shutil.rmtree(version, ignore_errors=True)
            raise
        _fsync_dir(self._root)
        if old is not None and old != version.name:
            shutil.rmtree(self._root / old, ignore_errors=True)

    async def delete(self, name: str) -> None:
        link = self.path(name)
        old = _target(link)
        try:
            os.unlink(link)
        except FileNotFoundError:
            raise NotFound("Secret", name) from None
        _fsync_dir(self._root)
        if old is not None:
            shutil.rmtree(self._root / old, ignore_errors=True)

    async def names(self) -> list[str]:
        try:
            entries = os.listdir(self._root)
        except FileNotFoundError:
            return []
        return sorted(
            entry for entry in entries if valid_name(entry) and (self._root / entry).is_dir()
        )


def _check_name(name: str) -> None:
    # DNS-1123 names have no "/" and never start with ".": no traversal, no hidden clash.
    if not isinstance(name, str) or not valid_name(name):
        raise ValueError(f"invalid secret name {name!r}")


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not _KEY.match(key) or key in (".", ".."):
        raise ValueError(f"invalid secret key {key!r}")


def _target(link: Path) -> str | None:
    """The version folder ``link`` points at; None if absent."""
    try:
        target = os.readlink(link)
    except FileNotFoundError:
        return None
    except OSError as error:  # not a symlink: a folder we did not make
        raise ValueError(f"{link} is not a secret managed by this store") from error
    # Only ever a sibling we made; never follow anything else out of root.
    if os.sep in target or not target.startswith("."):
        raise ValueError(f"{link} points outside the secret store")
    return target


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _read_at(dir_fd: int, key: str) -> bytes:
    fd = os.open(key, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW, dir_fd=dir_fd)
    with os.fdopen(fd, "rb") as handle:
        return handle.read()


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
