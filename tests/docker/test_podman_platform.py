"""`--platform podman` on real podman (as root here): the docker platform's contract.

The same container (name, labels, host network, read-only, no capabilities, restart
policy), built by ``skupper system install --platform podman`` into podman's own image
store; a podman site and a local site link both ways and carry service traffic, and a
kill -9 of the container's process is restarted by podman with the link coming back.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from docker_support import (
    BASE_IMAGE,
    ContainerSkupper,
    EngineUnderTest,
    host_network_state,
    redeem,
    seed_ports,
    serve_between,
    wait_link_ready,
)

from tests_support import one_error_line, table, wait_for

pytestmark = pytest.mark.e2e


def test_podman_and_local_sites_link_both_ways_and_survive_a_crash(
        pm: ContainerSkupper, podman_engine: EngineUnderTest, tmp_path: Path) -> None:
    # Built anew: podman would give a build its bridge network (netavark: firewall rules,
    # IP forwarding) unless told --network none.
    network = host_network_state()
    pm.run("system", "uninstall", "--platform", "podman")
    pm.run("system", "install", "--platform", "podman", "--base-image", BASE_IMAGE,
           timeout=900)
    assert host_network_state() == network
    seed_ports(pm, "pd")
    pm.run("site", "create", "pd", "--enable-link-access", "-n", "pd", "--platform", "podman")
    pm.run("site", "create", "lc", "--enable-link-access", "-n", "lc", "--platform", "systemd")
    info = podman_engine.inspect("skupper-pd")
    assert info is not None
    host = info["HostConfig"]
    assert isinstance(host, dict)
    assert host["NetworkMode"] == "host" and host["ReadonlyRootfs"] is True
    assert host["RestartPolicy"]["Name"] == "unless-stopped"
    assert host["Privileged"] is False

    redeem(pm, "pd", "lc", tmp_path)
    redeem(pm, "lc", "pd", tmp_path)
    wait_link_ready(pm, "pd", "outgoing")
    wait_link_ready(pm, "lc", "outgoing")
    serve_between(pm, "pd", "lc", "to-podman")
    serve_between(pm, "lc", "pd", "to-local")

    host_pid = int(info["State"]["Pid"])  # type: ignore[index]
    os.kill(host_pid, signal.SIGKILL)

    def restarted() -> bool:
        now = podman_engine.inspect("skupper-pd")
        state = now["State"] if now else {}
        return bool(now and state["Running"] and state["Pid"] != host_pid)  # type: ignore[index]

    wait_for("podman restarts the container", restarted, 30, 0.1)
    wait_link_ready(pm, "lc", "outgoing")
    wait_link_ready(pm, "pd", "outgoing")
    serve_between(pm, "pd", "lc", "after-crash")

    one_error_line(pm.fails("site", "status", "-n", "pd", "--platform", "docker"),
                   'Namespace "pd" is a podman site, not a docker one')
    pm.run("system", "stop", "-n", "pd")
    assert table(pm.run("site", "status", "-n", "pd").stdout)[0]["STATUS"] == "Stopped"
    pm.run("system", "start", "-n", "pd")
    assert table(pm.run("site", "status", "-n", "pd").stdout)[0]["STATUS"] == "Ready"
    pm.run("site", "delete", "-n", "pd")
    assert podman_engine.inspect("skupper-pd") is None
    assert not pm.namespace_dir("pd").exists()
