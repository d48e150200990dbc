"""The AccessToken file: rendered as upstream writes it, written private and atomically."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import yaml

from skupper.base.errors import SkupperError
from skupper.certs.issue import generate_ca
from skupper.grants.token_file import (
    check_token_destination,
    render_token,
    token_from_grant,
    write_token,
)
from skupper.resources import API_VERSION, Resource

CA_PEM = generate_ca("west grant server CA").cert_pem.decode()
NAME = "west-0b8e6a2c-5a3f-4d3e-9c3b-2f6a3c1d9e7f"
URL = "https://127.0.0.1:9090/1b4e28ba-2fa1-11d2-883f-0016d3cca427"
CODE = "Abcdefghijklmnopqrstuvw1"


def _grant() -> Resource:
    return {
        "apiVersion": API_VERSION,
        "kind": "AccessGrant",
        "metadata": {"name": NAME, "uid": "1b4e28ba-2fa1-11d2-883f-0016d3cca427"},
        "spec": {"redemptionsAllowed": 1, "expirationWindow": "15m0s"},
        "status": {"url": URL, "code": CODE, "ca": CA_PEM, "redemptions": 0},
    }


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_token_from_grant_has_upstream_shape() -> None:
    token = token_from_grant(_grant(), 5)
    assert token == {
        "apiVersion": "skupper.io/v2alpha1",
        "kind": "AccessToken",
        "metadata": {"name": NAME},
        "spec": {"ca": CA_PEM, "code": CODE, "linkCost": 5, "url": URL},
    }


def test_render_round_trips_through_safe_load() -> None:
    token = token_from_grant(_grant(), 1)
    text = render_token(token)
    documents = list(yaml.safe_load_all(text))
    assert documents == [token]
    assert not text.startswith("---")


def test_render_writes_the_pem_as_a_literal_block() -> None:
    text = render_token(token_from_grant(_grant(), 1))
    lines = text.splitlines()
    start = lines.index("  ca: |")
    # The certificate follows line by line, indented, exactly as in the PEM.
    pem_lines = CA_PEM.strip().splitlines()
    assert [line.strip() for line in lines[start + 1 : start + 1 + len(pem_lines)]] == pem_lines
    assert all(line.startswith("    ") for line in lines[start + 1 : start + 1 + len(pem_lines)])
    assert "\\n" not in text


def test_write_token_is_0600_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    path = tmp_path / "token.yaml"
    token = token_from_grant(_grant(), 1)
    write_token(path, token)
    assert _mode(path) == 0o600
    assert yaml.safe_load(path.read_text()) == token
    assert sorted(p.name for p in tmp_path.iterdir()) == ["token.yaml"]


def test_write_token_replaces_a_world_readable_file_with_a_private_one(tmp_path: Path) -> None:
    path = tmp_path / "token.yaml"
    path.write_text("old contents\n")
    os.chmod(path, 0o644)
    inode_before = path.stat().st_ino
    write_token(path, token_from_grant(_grant(), 1))
    assert _mode(path) == 0o600
    # Atomic: a new file renamed over the old, never the old one rewritten in place.
    assert path.stat().st_ino != inode_before
    assert yaml.safe_load(path.read_text())["kind"] == "AccessToken"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["token.yaml"]


def test_write_token_into_a_missing_folder_is_one_skupper_error(tmp_path: Path) -> None:
    with pytest.raises(SkupperError) as excinfo:
        write_token(tmp_path / "gone" / "token.yaml", token_from_grant(_grant(), 1))
    assert "Cannot write token file" in excinfo.value.line()
    assert not (tmp_path / "gone").exists()


def test_destination_dash_means_standard_output() -> None:
    assert check_token_destination("-") is None


def test_destination_plain_file(tmp_path: Path) -> None:
    assert check_token_destination(str(tmp_path / "t.yaml")) == tmp_path / "t.yaml"


def test_destination_expands_the_home_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert check_token_destination("~/t.yaml") == tmp_path / "t.yaml"


def test_destination_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SkupperError) as excinfo:
        check_token_destination(str(tmp_path))
    assert "directory" in excinfo.value.line()
    assert excinfo.value.line().startswith("Cannot write token file")


def test_destination_in_a_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SkupperError) as excinfo:
        check_token_destination(str(tmp_path / "missing" / "t.yaml"))
    assert "does not exist" in excinfo.value.line()
    assert not (tmp_path / "missing").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any folder")
def test_destination_in_a_read_only_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    os.chmod(folder, 0o500)
    try:
        with pytest.raises(SkupperError) as excinfo:
            check_token_destination(str(folder / "t.yaml"))
        assert "not writable" in excinfo.value.line()
    finally:
        os.chmod(folder, 0o700)


# --- destinations that are not regular files -----------------------------------------------
# Device nodes and FIFOs are made inside tmp dirs: nothing here touches the real /dev.


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _char_device(path: Path) -> None:
    os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # /dev/null's numbers


def _socket(path: Path) -> None:
    import socket

    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.close()  # the socket file stays


def _link_to_stdout(path: Path) -> None:
    os.symlink("/proc/self/fd/1", path)


def _link_to_file(path: Path) -> None:
    target = path.parent / "elsewhere.yaml"
    target.write_text("someone else's file\n")
    os.symlink(target, path)


def _dangling_link(path: Path) -> None:
    os.symlink(path.parent / "nothing-here", path)


NOT_REGULAR = {
    "a FIFO": (_fifo, "it is not a regular file (a FIFO)"),
    "a character device": (_char_device, "it is not a regular file (a character device)"),
    "a socket": (_socket, "it is not a regular file (a socket)"),
    "a link to /proc/self/fd/1": (_link_to_stdout, "it is a symbolic link"),
    "a link to a file": (_link_to_file, "it is a symbolic link"),
    "a dangling link": (_dangling_link, "it is a symbolic link"),
}


def _snapshot(folder: Path) -> dict[str, tuple[int, int, str]]:
    """Every entry: its type bits, inode and (for regular files) contents."""
    out = {}
    for entry in folder.iterdir():
        st = entry.lstat()
        text = entry.read_text() if stat.S_ISREG(st.st_mode) else ""
        out[entry.name] = (stat.S_IFMT(st.st_mode), st.st_ino, text)
    return out


@pytest.mark.parametrize("kind", list(NOT_REGULAR))
def test_a_destination_that_is_not_a_regular_file_is_refused(tmp_path: Path, kind: str) -> None:
    make, fragment = NOT_REGULAR[kind]
    path = tmp_path / "token.yaml"
    make(path)
    before = _snapshot(tmp_path)
    with pytest.raises(SkupperError) as excinfo:
        check_token_destination(str(path))
    line = excinfo.value.line()
    assert line.startswith(f"Cannot write token file {path}: {fragment}"), line
    assert line.endswith("Give a file name, or - for standard output.")
    # Written anyway (the check is repeated at write time): refused, nothing changed.
    with pytest.raises(SkupperError) as excinfo:
        write_token(path, token_from_grant(_grant(), 1))
    assert fragment in excinfo.value.line()
    assert _snapshot(tmp_path) == before


def test_proc_self_fd_and_dev_stdout_are_refused_without_being_touched() -> None:
    for file in ("/proc/self/fd/1", "/dev/stdout", "/dev/null"):
        with pytest.raises(SkupperError) as excinfo:
            check_token_destination(file)
        assert "Give a file name, or - for standard output." in excinfo.value.line()
    assert stat.S_ISCHR(os.lstat("/dev/null").st_mode)


def test_a_regular_file_swapped_for_a_fifo_after_the_check_is_not_replaced(
    tmp_path: Path,
) -> None:
    path = tmp_path / "token.yaml"
    path.write_text("old\n")
    assert check_token_destination(str(path)) == path
    path.unlink()
    os.mkfifo(path)  # between the check and the write
    with pytest.raises(SkupperError) as excinfo:
        write_token(path, token_from_grant(_grant(), 1))
    assert "a FIFO" in excinfo.value.line()
    assert stat.S_ISFIFO(path.lstat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["token.yaml"]


def test_a_link_in_the_folders_on_the_way_is_followed(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "via").symlink_to(real)
    path = check_token_destination(str(tmp_path / "via" / "t.yaml"))
    assert path is not None
    write_token(path, token_from_grant(_grant(), 1))
    assert _mode(real / "t.yaml") == 0o600


def test_reading_a_token_from_an_endless_device_is_bounded() -> None:
    from skupper.grants.token_file import parse_token

    with pytest.raises(SkupperError) as excinfo:
        parse_token("/dev/zero")  # reported size 0, never ends
    assert "a token is a few KiB at most" in excinfo.value.line()
