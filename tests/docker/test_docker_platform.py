"""`--platform docker` on a real engine: a site daemon in a container beside a local site.

The installed ``skupper`` command and the real dockerd; the container runs with host
networking, so every link, listener and connector is on 127.0.0.1 as on the local
platform. A test's containers are removed by name at its end (conftest).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
from pathlib import Path

import pytest
from docker_support import (
    BASE_IMAGE,
    LOOPBACK,
    ContainerSkupper,
    EngineUnderTest,
    host_network_state,
    redeem,
    seed_ports,
    serve_between,
    wait_link_ready,
)

from tests_support import SKUPPER, one_error_line, table, wait_for

pytestmark = pytest.mark.e2e


def _docker_site(runner: ContainerSkupper, namespace: str, *args: str) -> None:
    done = runner.run("site", "create", namespace, "--enable-link-access", "-n", namespace,
                      "--platform", "docker", *args)
    assert done.stdout.splitlines() == ["Waiting for status...", f'Site "{namespace}" is ready.']


def _local_site(runner: ContainerSkupper, namespace: str) -> None:
    runner.run("site", "create", namespace, "--enable-link-access", "-n", namespace,
               "--platform", "linux")  # upstream's name for the bare-host platform


def _status(runner: ContainerSkupper, namespace: str) -> dict[str, str]:
    return table(runner.run("site", "status", "-n", namespace).stdout)[0]


def test_docker_and_local_sites_link_both_ways_with_service_traffic(
        dk: ContainerSkupper, docker_engine: EngineUnderTest, tmp_path: Path) -> None:
    # Nothing says --platform after create: each namespace keeps the platform that made it.
    _docker_site(dk, "dk")
    _local_site(dk, "lc")

    redeem(dk, "dk", "lc", tmp_path)  # the local site links to the docker site
    wait_link_ready(dk, "lc", "outgoing")
    wait_link_ready(dk, "dk", "incoming")
    redeem(dk, "lc", "dk", tmp_path)  # and the docker site to the local one
    wait_link_ready(dk, "dk", "outgoing")
    assert _status(dk, "dk")["SITES-IN-NETWORK"] == "2"

    serve_between(dk, "dk", "lc", "to-docker")  # a server beside the container
    serve_between(dk, "lc", "dk", "to-local")  # a client of the container's listener

    # Both sites see a network of a docker site and a local one, from either side; the
    # container's observer answers the CLI on the host (host networking).
    import json

    from tests_support import wait_for

    def platforms(ns: str) -> dict[str, str] | None:
        doc = json.loads(dk.run("network", "status", "-n", ns, "-o", "json").stdout)
        found = {site["name"]: site["platform"] for site in doc["sites"]}
        return found if found == {"dk": "docker", "lc": "systemd"} else None

    wait_for("each site sees the other's platform", lambda: platforms("lc"), 15)
    assert platforms("dk") is not None
    assert dk.run("network", "console", "-n", "dk").stdout.startswith("http://127.0.0.1:")

    # The rest of the commands work on the shared store; the container's daemon acts.
    grants = table(dk.run("access-grant", "status", "-n", "dk").stdout)
    assert [g["REDEMPTIONS"] for g in grants] == ["1/1"], grants
    done = dk.run("site", "update", "--link-access-host", "localhost", "-n", "dk")
    assert done.stdout.splitlines()[-1] == 'Site "dk" is updated.'
    assert "localhost:" in _status(dk, "dk")["LINK-ACCESS"]

    # The container, as the engine runs it: no more than it needs.
    info = docker_engine.inspect("skupper-dk")
    assert info is not None
    host, config = info["HostConfig"], info["Config"]
    assert isinstance(host, dict) and isinstance(config, dict)
    assert host["NetworkMode"] == "host"
    assert host["RestartPolicy"]["Name"] == "unless-stopped"
    assert host["ReadonlyRootfs"] is True and host["Privileged"] is False
    assert [c.upper().removeprefix("CAP_") for c in host["CapDrop"]] == ["ALL"]
    assert "no-new-privileges" in host["SecurityOpt"]
    assert config["User"] == f"{os.getuid()}:{os.getgid()}"
    assert config["Labels"]["app.kubernetes.io/managed-by"] == "skupper"
    assert config["Labels"]["skupper.io/namespace"] == "dk"
    root = dk.namespace_dir("dk")
    assert [m["Source"] for m in info["Mounts"]] == [str(root)]  # type: ignore[index]

    # The state the container wrote is the CLI user's, with the local platform's modes.
    for path in [root, *root.rglob("*")]:
        mode = path.lstat()
        assert mode.st_uid == os.getuid() and mode.st_gid == os.getgid(), path
        if stat.S_ISDIR(mode.st_mode):
            assert stat.S_IMODE(mode.st_mode) == 0o700, path
    for key in root.glob("secrets/*/tls.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key


def test_a_killed_container_is_restarted_and_its_links_come_back(
        dk: ContainerSkupper, docker_engine: EngineUnderTest, tmp_path: Path) -> None:
    seed_ports(dk, "dk")
    _docker_site(dk, "dk")
    _local_site(dk, "lc")
    redeem(dk, "dk", "lc", tmp_path)
    wait_link_ready(dk, "lc", "outgoing")

    before = docker_engine.inspect("skupper-dk")
    assert before is not None
    host_pid = int(before["State"]["Pid"])  # type: ignore[index]
    # The pid the daemon wrote is in the container's pid namespace: not the host's.
    written = int((dk.namespace_dir("dk") / "runtime" / "daemon.pid").read_text())
    assert written != host_pid
    shown = dk.run("system", "status", "-n", "dk", "--platform", "docker").stdout
    assert f"host pid {host_pid}" in shown.splitlines()[0]

    os.kill(host_pid, signal.SIGKILL)  # a crash: docker kill would disable the policy

    def restarted() -> bool:
        info = docker_engine.inspect("skupper-dk")
        state = info["State"] if info else {}
        return bool(info and info["RestartCount"] == 1  # type: ignore[index]
                    and state["Running"] and state["Pid"] != host_pid)  # type: ignore[index]

    wait_for("the engine restarts the container", restarted, 30, 0.1)
    wait_link_ready(dk, "lc", "outgoing")
    serve_between(dk, "dk", "lc", "after-crash")
    assert "restarts: 1" in dk.run("system", "status", "-n", "dk",
                                   "--platform", "docker").stdout


def test_stop_start_and_delete_ask_the_engine(
        dk: ContainerSkupper, docker_engine: EngineUnderTest) -> None:
    _docker_site(dk, "dk")
    root = dk.namespace_dir("dk")
    docker = ("--platform", "docker")

    done = dk.run("system", "stop", "-n", "dk", *docker)
    assert done.stdout.strip() == 'The site daemon for namespace "dk" is stopped.'
    info = docker_engine.inspect("skupper-dk")
    assert info is not None and info["State"]["Running"] is False  # type: ignore[index]
    assert info["State"]["ExitCode"] == 0  # type: ignore[index]  # TERM: a clean stop
    assert (root / "store.db").is_file()  # state kept
    status = table(dk.run("site", "status", "-n", "dk", *docker).stdout)[0]
    assert status["STATUS"] == "Stopped"
    assert dk.run("system", "status", "-n", "dk", *docker).stdout.startswith(
        "Site daemon: stopped (container skupper-dk")
    one_error_line(dk.fails("listener", "create", "x", "4000", "-n", "dk", *docker),
                   "The site is stopped", "skupper system start -n dk")

    dk.run("system", "start", "-n", "dk", *docker)
    assert table(dk.run("site", "status", "-n", "dk", *docker).stdout)[0]["STATUS"] == "Ready"

    # Stopped or removed behind skupper's back: site status shows the engine's truth.
    docker_engine.cli("stop", "skupper-dk")
    status = table(dk.run("site", "status", "-n", "dk", *docker).stdout)[0]
    assert status["STATUS"] == "Stopped"
    docker_engine.cli("rm", "skupper-dk")
    assert "no container skupper-dk" in dk.run("system", "status", "-n", "dk", *docker).stdout
    dk.run("system", "start", "-n", "dk", *docker)  # made anew, from the same state
    assert table(dk.run("site", "status", "-n", "dk", *docker).stdout)[0]["STATUS"] == "Ready"

    done = dk.run("site", "delete", "-n", "dk", *docker)
    assert done.stdout.splitlines()[-1] == 'Site "dk" is deleted.'
    assert docker_engine.inspect("skupper-dk") is None
    assert not root.exists()


def test_a_namespace_keeps_its_platform(dk: ContainerSkupper) -> None:
    _docker_site(dk, "dk")
    _local_site(dk, "lc")
    for other in ("systemd", "linux", "podman"):
        one_error_line(dk.fails("site", "status", "-n", "dk", "--platform", other),
                       'Namespace "dk" is a docker site, not a', "--platform docker")
    # SKUPPER_PLATFORM is as explicit as the flag.
    env = dict(dk.env, SKUPPER_PLATFORM="systemd")
    done = subprocess.run([SKUPPER, "system", "stop", "-n", "dk"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    one_error_line(done, "is a docker site")
    one_error_line(dk.fails("site", "delete", "-n", "lc", "--platform", "docker"),
                   'Namespace "lc" is a systemd site, not a docker one')
    one_error_line(dk.fails("site", "create", "again", "-n", "lc", "--platform", "docker"),
                   "is a systemd site")
    assert _status(dk, "lc")["STATUS"] == "Ready"  # nothing changed there
    assert table(dk.run("site", "status", "-n", "dk", "--platform", "docker").stdout
                 )[0]["STATUS"] == "Ready"


def test_engine_errors_are_one_line_and_change_nothing(
        dk: ContainerSkupper, docker_engine: EngineUnderTest, tmp_path: Path) -> None:
    docker = ("--platform", "docker")
    # Not installed: no docker on PATH.
    no_docker = dict(dk.env, PATH=str(tmp_path / "empty-bin"))
    done = subprocess.run([SKUPPER, "site", "create", "s", "-n", "s", *docker], env=no_docker,
                          capture_output=True, text=True, timeout=60, check=False)
    one_error_line(done, "The docker engine is not installed", "no docker command on PATH")
    assert not dk.namespace_dir("s").exists()

    # Not running: DOCKER_HOST names a socket nothing listens on; every command says so.
    _docker_site(dk, "dk")
    dead = dict(dk.env, DOCKER_HOST=f"unix://{tmp_path}/nothing.sock")
    for args in (("site", "create", "s", "-n", "s"), ("site", "status", "-n", "dk"),
                 ("system", "status", "-n", "dk"), ("system", "stop", "-n", "dk"),
                 ("system", "start", "-n", "dk"), ("listener", "create", "x", "4000", "-n", "dk"),
                 ("access-token", "issue", str(tmp_path / "t.yaml"), "-n", "dk"),
                 ("site", "delete", "-n", "dk"), ("system", "install")):
        done = subprocess.run([SKUPPER, *args, *docker], env=dead, capture_output=True,
                              text=True, timeout=60, check=False)
        one_error_line(done, "The docker engine is not running", "DOCKER_HOST=unix://")
    assert not dk.namespace_dir("s").exists() and not (tmp_path / "t.yaml").exists()
    assert _status(dk, "dk")["STATUS"] == "Ready"  # nothing was stopped or deleted

    # A container of that name that is not this site's.
    docker_engine.cli("run", "--detach", "--name", "skupper-stray", "--label",
                      "app.kubernetes.io/managed-by=someone", BASE_IMAGE, "sleep", "600")
    try:
        done = dk.fails("site", "create", "s", "-n", "stray", *docker)
        one_error_line(done, 'A container named "skupper-stray" exists and is not this site',
                       "docker rm -f skupper-stray")
        assert not dk.namespace_dir("stray").exists()
    finally:
        docker_engine.cli("rm", "--force", "skupper-stray")

    # A port already in use on the host: the listener in the container cannot bind it.
    with socket.socket() as busy:
        busy.bind((LOOPBACK, 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        done = dk.fails("listener", "create", "busy", port, "--host", LOOPBACK, "-n", "dk",
                        "--wait", "ready", *docker)
        one_error_line(done, f"{LOOPBACK}:{port}", "another process holds the port")


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root and setpriv to drop the capability to ignore modes")
def test_an_engine_socket_not_permitted_says_so(dk: ContainerSkupper, tmp_path: Path) -> None:
    # DOCKER_HOST names a socket this user may not connect to: another user's, mode 0600
    # (root without CAP_DAC_OVERRIDE is refused like anyone else).
    path = tmp_path / "someone-elses.sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        server.listen()
        os.chown(path, 65534, 65534)
        path.chmod(0o600)
        env = dict(dk.env, DOCKER_HOST=f"unix://{path}")
        for args in (("site", "create", "s", "-n", "s"), ("system", "install")):
            done = subprocess.run(
                ["setpriv", "--bounding-set=-dac_override,-dac_read_search", SKUPPER, *args,
                 "--platform", "docker"],
                env=env, capture_output=True, text=True, timeout=60, check=False)
            one_error_line(done, "Cannot use the docker engine",
                           f"permission denied on its socket (DOCKER_HOST=unix://{path})")
    assert not dk.namespace_dir("s").exists()


def test_uninstall_then_create_asks_for_install(
        dk: ContainerSkupper, docker_engine: EngineUnderTest) -> None:
    docker = ("--platform", "docker")
    network = host_network_state()
    try:
        done = dk.run("system", "uninstall", *docker)
        assert done.stdout.strip() == "The image skupper-py:0.1.0 is removed from docker."
        assert docker_engine.cli("image", "inspect", "skupper-py:0.1.0",
                                 check=False).returncode != 0
        one_error_line(dk.fails("site", "create", "s", "-n", "s", *docker),
                       "The site image skupper-py:0.1.0 is not installed",
                       '"skupper system install --platform docker"')
        assert not dk.namespace_dir("s").exists()
    finally:
        done = dk.run("system", "install", "--base-image", BASE_IMAGE, *docker, timeout=900)
    assert done.stdout.splitlines()[-1] == "The image skupper-py:0.1.0 is installed in docker."
    # Installing again with nothing changed builds nothing.
    again = dk.run("system", "install", "--base-image", BASE_IMAGE, *docker, timeout=900)
    assert again.stdout.splitlines()[-1].endswith("(up to date).")
    assert host_network_state() == network  # the build had no network: no bridge, no rules
