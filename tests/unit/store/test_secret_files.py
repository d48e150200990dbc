"""FileSecretStore on real files: modes, atomic replacement, refused names."""

from __future__ import annotations

import asyncio
import os
import stat
import threading
from pathlib import Path

import pytest

from skupper.store.interface import NotFound
from skupper.store.secrets import FileSecretStore


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_put_get_delete_and_modes(tmp_path: Path) -> None:
    secrets = FileSecretStore(tmp_path / "secrets")

    async def main() -> None:
        assert await secrets.names() == []
        assert not await secrets.exists("site-ca")
        with pytest.raises(NotFound) as caught:
            await secrets.get("site-ca")
        assert (caught.value.kind, caught.value.name) == ("Secret", "site-ca")

        data = {"tls.crt": b"CERT", "tls.key": b"KEY", "ca.crt": b"CA"}
        await secrets.put("site-ca", data)
        await secrets.put("other.name", {"x": b""})
        assert await secrets.get("site-ca") == data
        assert await secrets.exists("site-ca")
        assert await secrets.names() == ["other.name", "site-ca"]

        folder = secrets.path("site-ca")
        assert folder == tmp_path / "secrets" / "site-ca" and folder.is_dir()
        assert _mode(tmp_path / "secrets") == 0o700
        assert _mode(folder) == 0o700
        for key in data:
            assert _mode(secrets.file("site-ca", key)) == 0o600
        assert secrets.file("site-ca", "tls.key").read_bytes() == b"KEY"

        await secrets.delete("site-ca")
        assert not await secrets.exists("site-ca")
        with pytest.raises(NotFound):
            await secrets.delete("site-ca")
        assert await secrets.names() == ["other.name"]
        hidden = [p.name for p in (tmp_path / "secrets").iterdir() if p.name.startswith(".")]
        assert len(hidden) == 1  # only the version folder of "other.name"

    asyncio.run(main())


def test_put_replaces_whole_secret(tmp_path: Path) -> None:
    secrets = FileSecretStore(tmp_path)

    async def main() -> None:
        await secrets.put("s", {"a": b"1", "b": b"1"})
        await secrets.put("s", {"c": b"2"})
        assert await secrets.get("s") == {"c": b"2"}
        assert not secrets.file("s", "a").exists()
        assert len(list(tmp_path.iterdir())) == 2  # the link and one version folder

    asyncio.run(main())


def test_readers_never_see_a_mix(tmp_path: Path) -> None:
    secrets = FileSecretStore(tmp_path)
    versions = [{"a": b"1", "b": b"1"}, {"b": b"2", "c": b"2", "d": b"2"}]
    asyncio.run(secrets.put("s", versions[0]))
    stop = threading.Event()

    def writer() -> None:
        async def main() -> None:
            for index in range(300):
                await secrets.put("s", versions[index % 2])

        try:
            asyncio.run(main())
        finally:
            stop.set()

    async def reader() -> int:
        reads = 0
        while not stop.is_set():
            assert await secrets.get("s") in versions
            reads += 1
        return reads

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert asyncio.run(reader()) > 0
    finally:
        thread.join()


@pytest.mark.parametrize("name", ["../x", "a/b", "..", ".hidden", "", "UPPER", "x" * 254, "/etc"])
def test_bad_names_are_refused(tmp_path: Path, name: str) -> None:
    secrets = FileSecretStore(tmp_path / "secrets")
    with pytest.raises(ValueError):
        secrets.path(name)
    with pytest.raises(ValueError):
        asyncio.run(secrets.put(name, {"k": b"v"}))
    with pytest.raises(ValueError):
        asyncio.run(secrets.get(name))
    with pytest.raises(ValueError):
        asyncio.run(secrets.delete(name))
    assert not (tmp_path / "secrets").exists()


@pytest.mark.parametrize("key", ["../x", "a/b", "..", ".", ""])
def test_bad_keys_are_refused(tmp_path: Path, key: str) -> None:
    secrets = FileSecretStore(tmp_path)
    with pytest.raises(ValueError):
        asyncio.run(secrets.put("s", {"ok": b"1", key: b"v"}))
    with pytest.raises(ValueError):
        secrets.file("s", key)
    assert list(tmp_path.iterdir()) == []
