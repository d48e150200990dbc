"""An engine restart: dockerd stops (its containers with it) and starts again; the site
container comes back by its restart policy and its link with it.

The test starts a dockerd of its own (its own socket, data root and exec root; no bridge,
no iptables, no IP forwarding) and reaches it through DOCKER_HOST, so the engine other
tests use is never touched; the site image is copied into it with docker save | load.
The dockerd is stopped by its pid, and its folders removed, at the end.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from docker_support import (
    ContainerSkupper,
    EngineUnderTest,
    redeem,
    seed_ports,
    serve_between,
    wait_link_ready,
)

from tests_support import alive, one_error_line, table, wait_for

pytestmark = pytest.mark.e2e
IMAGE = "skupper-py:0.1.0"


class PrivateDockerd:
    def __init__(self, root: Path) -> None:
        self.root = root
        # A unix socket path must stay short: the exec root is in /run, not tmp_path.
        self.exec_root = Path(tempfile.mkdtemp(prefix="skt-", dir="/run"))
        self.socket = root / "docker.sock"
        self.host = f"unix://{self.socket}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.root / "dockerd.log", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            ["dockerd", "--iptables=false", "--ip6tables=false", "--ip-forward=false",
             "--bridge=none", "--host", self.host, "--data-root", str(self.root / "data"),
             "--exec-root", str(self.exec_root), "--pidfile", str(self.root / "dockerd.pid")],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_for("the private dockerd answers", lambda: self.docker(
            "info", check=False).returncode == 0, 30, 0.1)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()  # by its pid: our child
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        pid = self.process.pid
        assert not alive(pid)
        self.process = None

    def docker(self, *args: str, check: bool = True, stdin: object = None,
               ) -> subprocess.CompletedProcess[bytes]:
        env = dict(os.environ, DOCKER_HOST=self.host)
        done = subprocess.run(["docker", *args], env=env, capture_output=True, timeout=120,
                              check=False, stdin=stdin)  # type: ignore[call-overload]
        if check and done.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {done.stderr.decode()}")
        return done  # type: ignore[no-any-return]

    def remove(self) -> None:
        self.stop()
        # dockerd leaves its network namespace mounted in the exec root (netns/default).
        for line in Path("/proc/self/mounts").read_text().splitlines():
            point = line.split()[1]
            if point.startswith(f"{self.exec_root}/"):
                subprocess.run(["umount", point], capture_output=True, timeout=30, check=False)
        shutil.rmtree(self.root / "data", ignore_errors=True)
        shutil.rmtree(self.exec_root, ignore_errors=True)


@pytest.fixture
def private_dockerd(tmp_path: Path, docker_engine: EngineUnderTest) -> Iterator[PrivateDockerd]:
    if os.geteuid() != 0 or shutil.which("dockerd") is None:
        pytest.skip("needs root and dockerd to run an engine of its own")
    engine = PrivateDockerd(tmp_path / "engine")
    engine.root.mkdir()
    try:
        engine.start()
        with tempfile.TemporaryFile(dir=tmp_path) as image:
            docker_engine.cli("image", "inspect", IMAGE)  # installed by the session fixture
            subprocess.run(["docker", "save", IMAGE], stdout=image, check=True, timeout=300,
                           env={**os.environ, **docker_engine.env})
            image.seek(0)
            engine.docker("load", stdin=image)
        yield engine
    finally:
        with contextlib.suppress(AssertionError, subprocess.SubprocessError):
            if engine.process is not None:
                engine.docker("rm", "--force", "skupper-dk", check=False)
        engine.remove()


def test_an_engine_restart_brings_the_site_and_its_link_back(
        dk: ContainerSkupper, private_dockerd: PrivateDockerd, tmp_path: Path) -> None:
    dk.env["DOCKER_HOST"] = private_dockerd.host  # honoured by every command
    seed_ports(dk, "dk")
    dk.run("site", "create", "dk", "--enable-link-access", "-n", "dk", "--platform", "docker")
    dk.run("site", "create", "lc", "-n", "lc", "--platform", "systemd")
    redeem(dk, "dk", "lc", tmp_path)
    wait_link_ready(dk, "lc", "outgoing")

    private_dockerd.stop()
    one_error_line(dk.fails("site", "status", "-n", "dk"), "The docker engine is not running",
                   f"DOCKER_HOST={private_dockerd.host}")
    wait_for("the local site sees the link down", lambda: table(dk.run(
        "link", "status", "-n", "lc").stdout)[0]["STATUS"] != "Ready", 30, 0.2)

    private_dockerd.start()
    wait_for("the container runs again", lambda: private_dockerd.docker(
        "inspect", "-f", "{{.State.Running}}", "skupper-dk", check=False
    ).stdout.strip() == b"true", 60, 0.2)
    wait_link_ready(dk, "lc", "outgoing")
    assert table(dk.run("site", "status", "-n", "dk").stdout)[0]["STATUS"] == "Ready"
    serve_between(dk, "dk", "lc", "after-engine-restart")
    dk.run("site", "delete", "-n", "dk")
    assert not dk.namespace_dir("dk").exists()
