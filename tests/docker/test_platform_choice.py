"""Choosing among the folder platforms without any engine: what a namespace remembers,
``linux`` as upstream's name for ``systemd``, and the engine missing altogether."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from skupper.base.errors import SkupperError
from skupper.platforms.select import check_recorded, choose_platform, recorded_platform
from tests_support import SKUPPER, one_error_line


def test_linux_is_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SKUPPER_PLATFORM", raising=False)
    assert choose_platform("linux") == "systemd"
    monkeypatch.setenv("SKUPPER_PLATFORM", "linux")
    assert choose_platform(None) == "systemd"


def test_a_folder_remembers_the_platform_that_made_it(tmp_path: Path) -> None:
    assert recorded_platform(tmp_path) is None  # nothing there yet
    (tmp_path / "store.db").write_bytes(b"")
    assert recorded_platform(tmp_path) == "systemd"  # made before platforms were recorded
    (tmp_path / "platform").write_text("docker\n")
    assert recorded_platform(tmp_path) == "docker"
    check_recorded(tmp_path, "west", "docker")
    with pytest.raises(SkupperError, match='Namespace "west" is a docker site, not a podman'):
        check_recorded(tmp_path, "west", "podman")
    (tmp_path / "platform").write_text("../../etc\n")
    with pytest.raises(SkupperError, match="names no known platform"):
        recorded_platform(tmp_path)


def test_no_engine_on_path_is_one_line_and_writes_nothing(skupper: Any, tmp_path: Path) -> None:
    env = dict(skupper.env, PATH=str(tmp_path / "empty-bin"))
    for args, engine in ((("site", "create", "s", "-n", "s", "--platform", "docker"), "docker"),
                         (("site", "create", "s", "-n", "s", "--platform", "podman"), "podman"),
                         (("system", "install", "--platform", "docker"), "docker")):
        done = subprocess.run([SKUPPER, *args], env=env, capture_output=True, text=True,
                              timeout=60, check=False)
        one_error_line(done, f"The {engine} engine is not installed",
                       f"no {engine} command on PATH")
    assert not (skupper.home / "data" / "skupper").exists()


def test_system_install_is_for_the_container_platforms(skupper: Any) -> None:
    one_error_line(skupper.fails("system", "install", "--platform", "systemd"),
                   "skupper system install applies to the docker and podman platforms")
    one_error_line(skupper.fails("system", "uninstall", "--platform", "linux"),
                   "skupper system uninstall applies to the docker and podman platforms")


def test_linux_platform_runs_a_local_site(skupper: Any) -> None:
    skupper.run("site", "create", "west", "--platform", "linux")
    assert not (skupper.namespace_dir() / "platform").exists()  # a systemd folder as ever
    assert "Site daemon: running (pid" in skupper.run("system", "status").stdout
