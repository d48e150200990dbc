"""A docker site, a local site and a Kubernetes site (the API double of tests/kube) in one
network: kb <- dk <- lc (dk redeemed kb's token, lc redeemed dk's). A client of a
listener at the local site reaches a server behind a connector at the Kubernetes site,
through the docker site: two links, three platforms, one CLI.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from docker_support import (
    LOOPBACK,
    ContainerSkupper,
    echo_server,
    echo_through,
    redeem,
    wait_link_ready,
)

from tests_support import SKUPPER, Skupper, free_port, table, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "kube"))
from double import DoubleThread
from kubehelp import (
    CONTROLLER_TOKEN,
    controller_role,
    create_namespace,
    kubectl_apply,
    manifests,
    role_authorizer,
    write_kubeconfig,
)

pytestmark = pytest.mark.e2e


@contextlib.contextmanager
def kubernetes_site(dk: ContainerSkupper, namespace: str) -> Iterator[Skupper]:
    """A namespace in the double with deploy/ applied and its controller running; yields a
    runner whose commands target it."""
    with DoubleThread(authorize=role_authorizer(controller_role())) as double:
        create_namespace(double, namespace)
        kubectl_apply(double.url, namespace, manifests())
        kubeconfig = write_kubeconfig(dk.home / "kubeconfig", double.url, namespace)
        env = dict(dk.env, SKUPPER_PLATFORM="kubernetes", KUBECONFIG=str(kubeconfig))
        controller_config = write_kubeconfig(dk.home / "controller-kubeconfig", double.url,
                                             namespace, token=CONTROLLER_TOKEN)
        runtime = dk.home / "kube-runtime"
        runtime.mkdir()
        log_path = dk.home / "controller.log"
        with open(log_path, "ab") as log:
            controller = subprocess.Popen(
                [SKUPPER, "system", "controller", "-n", namespace, "--kubeconfig",
                 str(controller_config)],
                env=dict(env, SKUPPER_RUNTIME_DIR=str(runtime), SKUPPER_CONTROLLER_ID="kb-1",
                         SKUPPER_LINK_ACCESS_HOST=LOOPBACK, SKUPPER_BIND_HOST=LOOPBACK),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for("the controller leads", lambda: " leads namespace " in log_path.read_text(
                errors="replace"), 30, 0.1)
            yield Skupper(home=dk.home, env=env)
        except AssertionError as exc:
            tail = log_path.read_text(errors="replace")[-4000:]
            raise AssertionError(f"{exc}\n--- controller log\n{tail}") from None
        finally:
            controller.terminate()
            try:
                controller.wait(timeout=15)
            except subprocess.TimeoutExpired:
                controller.kill()
                controller.wait(timeout=5)


def test_docker_local_and_kubernetes_sites_in_one_network(
        dk: ContainerSkupper, tmp_path: Path) -> None:
    with kubernetes_site(dk, "kb") as kube:
        kube.run("site", "create", "kb", "--enable-link-access", "-n", "kb", timeout=90)
        dk.run("site", "create", "dk", "--enable-link-access", "-n", "dk",
               "--platform", "docker")
        dk.run("site", "create", "lc", "-n", "lc", "--platform", "systemd")

        token = tmp_path / "kb.yaml"
        kube.run("access-token", "issue", str(token), "-n", "kb", timeout=90)
        done = dk.run("access-token", "redeem", str(token), "-n", "dk")
        assert "is active." in done.stdout
        redeem(dk, "dk", "lc", tmp_path)
        wait_link_ready(dk, "lc", "outgoing")
        wait_for("the local site sees three sites", lambda: table(dk.run(
            "site", "status", "-n", "lc").stdout)[0]["SITES-IN-NETWORK"] == "3", 60, 0.3)

        with echo_server() as backend:
            kube.run("connector", "create", "echo", str(backend), "--host", LOOPBACK,
                     "-n", "kb", timeout=90)
            front = free_port()
            dk.run("listener", "create", "echo", str(front), "--host", LOOPBACK, "-n", "lc",
                   "--wait", "ready")
            payload = b"across three platforms " * 1000
            assert wait_for("lc -> dk -> kb", lambda: echo_through(front, payload) == payload
                            or None, 30, 0.2)
        # The container stops before the controller does (the double is going away).
        dk.run("site", "delete", "-n", "dk")
