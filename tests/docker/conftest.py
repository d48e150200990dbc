"""Fixtures for the docker and podman platforms, against the real engines.

An engine fixture (one per session and engine) finds the engine, makes the base image
once (scripts/make-base-image.sh: debootstrap and import, reused from the engine's
store) and runs ``skupper system install`` (a no-op when the image for these exact
wheels exists). Without an engine the tests skip with one line; with CI=true a missing
engine fails them. Every container a test makes is removed by name at its end, and
only if its labels say it belongs to that test's data home.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from docker_support import BASE_IMAGE, ContainerSkupper, EngineUnderTest

from tests_support import SKUPPER, Skupper, hermetic_env

REPO = Path(__file__).resolve().parents[2]
# podman 4.3 as root sets rlimits this sandbox refuses unless told lower ones.
PODMAN_CONF = '[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n'


def _missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def _engine(kind: str, tmp_path_factory: pytest.TempPathFactory) -> EngineUnderTest:
    env: dict[str, str] = {}
    if kind == "podman" and "CONTAINERS_CONF" not in os.environ:
        conf = tmp_path_factory.mktemp("podman") / "containers.conf"
        conf.write_text(PODMAN_CONF)
        env["CONTAINERS_CONF"] = str(conf)
    if shutil.which(kind) is None:
        _missing(f"no {kind} command on PATH")
    probe = subprocess.run([kind, "info", "--format", "{{json .}}"], capture_output=True,
                           text=True, timeout=60, env={**os.environ, **env}, check=False)
    if probe.returncode != 0:
        _missing(f"the {kind} engine does not answer: {probe.stderr.strip()[-200:]}")
    made = subprocess.run(["bash", str(REPO / "scripts" / "make-base-image.sh"), kind,
                           BASE_IMAGE], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **env}, check=False)
    if made.returncode != 0:
        _missing(f"no base image {BASE_IMAGE} in {kind}: {made.stderr.strip()[-200:]}")
    install = subprocess.run([SKUPPER, "system", "install", "--platform", kind,
                              "--base-image", BASE_IMAGE], capture_output=True, text=True,
                             timeout=900, env={**os.environ, **env}, check=False)
    assert install.returncode == 0, f"system install: {install.stdout}{install.stderr}"
    return EngineUnderTest(kind, env)


@pytest.fixture(scope="session")
def docker_engine(tmp_path_factory: pytest.TempPathFactory) -> EngineUnderTest:
    return _engine("docker", tmp_path_factory)


@pytest.fixture(scope="session")
def podman_engine(tmp_path_factory: pytest.TempPathFactory) -> EngineUnderTest:
    return _engine("podman", tmp_path_factory)


def container_runner(home: Path, engine: EngineUnderTest) -> Iterator[ContainerSkupper]:
    home.mkdir()
    runner = ContainerSkupper(home=home, env={**hermetic_env(home), **engine.env})
    # Commands name no platform: a namespace uses the one that made it (else systemd).
    runner.env.pop("SKUPPER_PLATFORM")
    try:
        yield runner
    finally:
        runner.kill_daemons()
        remove_containers(runner, engine)


def remove_containers(runner: Skupper, engine: EngineUnderTest) -> None:
    for namespace in runner.namespaces:
        info = engine.inspect(f"skupper-{namespace}")
        if info is None:
            continue
        labels = (info.get("Config") or {}).get("Labels") or {}  # type: ignore[attr-defined]
        if str(labels.get("skupper.io/state", "")).startswith(str(runner.home)):
            with contextlib.suppress(AssertionError):
                engine.cli("rm", "--force", f"skupper-{namespace}")


@pytest.fixture
def dk(tmp_path: Path, docker_engine: EngineUnderTest) -> Iterator[ContainerSkupper]:
    """A hermetic data home whose skupper reaches the docker engine."""
    yield from container_runner(tmp_path / "home", docker_engine)


@pytest.fixture
def pm(tmp_path: Path, podman_engine: EngineUnderTest) -> Iterator[ContainerSkupper]:
    """A hermetic data home whose skupper reaches the podman engine."""
    yield from container_runner(tmp_path / "home", podman_engine)
