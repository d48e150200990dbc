"""`--platform kubernetes` end to end: the installed `skupper` command and `skupper system
controller` as real processes, reaching the strict API double over HTTP (KUBECONFIG), with
the grant servers and link listeners on 127.0.0.1. Also: local (systemd) sites and
Kubernetes sites redeeming each other's tokens, and controllers killed mid-way.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from double import DoubleThread
from kubehelp import (
    CONTROLLER_TOKEN,
    controller_role,
    create_namespace,
    kubectl_apply,
    manifests,
    redeem_post,
    role_authorizer,
    write_kubeconfig,
)

from tests_support import SKUPPER

KUBE_TIMEOUT = 60.0


def _wait(check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout:g} s (last: {last!r})")


@dataclass
class Cluster:
    """The API double, a kubeconfig for it, and controllers started by namespace."""

    double: DoubleThread
    kubeconfig: Path
    home: Path
    env: dict[str, str]
    controllers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def install(self, namespace: str) -> None:
        create_namespace(self.double, namespace)
        kubectl_apply(self.double.url, namespace, manifests())

    def start_controller(self, namespace: str) -> subprocess.Popen[bytes]:
        log_file = self.home / f"controller-{namespace}.log"
        starts = log_file.read_text().count(" leads namespace ") if log_file.exists() else 0
        runtime = self.home / "runtime" / namespace
        runtime.mkdir(parents=True, exist_ok=True)
        env = dict(self.env, SKUPPER_RUNTIME_DIR=str(runtime),
                   SKUPPER_CONTROLLER_ID=f"controller-{namespace}",
                   SKUPPER_LINK_ACCESS_HOST="127.0.0.1", SKUPPER_BIND_HOST="127.0.0.1")
        log = open(self.home / f"controller-{namespace}.log", "ab")  # noqa: SIM115
        # The controller authenticates as its ServiceAccount: the double applies the Role
        # of deploy/ to it, so a missing permission fails the test (403).
        kubeconfig = write_kubeconfig(self.home / "controller-kubeconfig", self.double.url,
                                      namespace, token=CONTROLLER_TOKEN)
        process = subprocess.Popen(
            [SKUPPER, "system", "controller", "-n", namespace, "--kubeconfig",
             str(kubeconfig)],
            env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        self.controllers[namespace] = process
        # The same identity as a killed predecessor (as a restarted pod keeps its name): the
        # lease is taken over at once. Wait for this process to say it leads.
        _wait(lambda: self.log(namespace).count(" leads namespace ") > starts,
              f"controller {namespace} leads")
        assert self.lease_holder(namespace) == f"controller-{namespace}"
        return process

    def since_last_start(self, namespace: str) -> str:
        return self.log(namespace).split(" leads namespace ")[-1]

    def kill_controller(self, namespace: str, sig: int = signal.SIGKILL) -> None:
        process = self.controllers.pop(namespace)
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
        process.wait(timeout=15)

    def lease_holder(self, namespace: str) -> str | None:
        lease = self.double.call(lambda: self.double.api._objects_get(
            ("coordination.k8s.io", "v1", "leases"), namespace, "skupper-controller"))
        return None if lease is None else lease["spec"].get("holderIdentity")

    def objects(self, plural: str, namespace: str) -> list[dict[str, Any]]:
        def read() -> list[dict[str, Any]]:
            return [json.loads(json.dumps(obj.raw))
                    for (res, ns, _), obj in self.double.api.objects.items()
                    if res.plural == plural and ns == namespace and not obj.deleted]

        return self.double.call(read)

    def log(self, namespace: str) -> str:
        return (self.home / f"controller-{namespace}.log").read_text(errors="replace")

    def run(self, *args: str, check: bool = True, timeout: float = 90,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([SKUPPER, *args], env=env or self.env, capture_output=True,
                              text=True, timeout=timeout, check=False)
        if check and done.returncode != 0:
            logs = "\n".join(f"--- {ns}\n{self.log(ns)[-3000:]}" for ns in self.controllers)
            raise AssertionError(f"skupper {' '.join(args)} exited {done.returncode}\n"
                                 f"stdout: {done.stdout}\nstderr: {done.stderr}\n{logs}")
        return done

    def fails(self, *args: str, env: dict[str, str] | None = None
              ) -> subprocess.CompletedProcess[str]:
        done = self.run(*args, check=False, env=env)
        assert done.returncode != 0, f"expected failure: {done.stdout}{done.stderr}"
        return done

    def stop(self) -> None:
        for namespace in list(self.controllers):
            self.kill_controller(namespace, signal.SIGTERM)


def kube_env(base: dict[str, str], kubeconfig: Path) -> dict[str, str]:
    return dict(base, SKUPPER_PLATFORM="kubernetes", KUBECONFIG=str(kubeconfig))


@pytest.fixture
def cluster(skupper: Any, tmp_path: Path) -> Iterator[Cluster]:
    """West and east namespaces with deploy/ applied; `skupper` targets the cluster."""
    with DoubleThread(authorize=role_authorizer(controller_role())) as double:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", double.url, "west")
        running = Cluster(double, kubeconfig, skupper.home, kube_env(skupper.env, kubeconfig))
        for namespace in ("west", "east"):
            running.install(namespace)
        try:
            yield running
        finally:
            running.stop()
            pruned = double.call(lambda: list(double.api.pruned))
            assert pruned == [], f"fields the API server would have dropped: {pruned}"
            forbidden = double.call(lambda: list(double.api.forbidden))
            assert forbidden == [], f"the controller's Role lacks: {forbidden}"


def _site(cluster: Cluster, namespace: str) -> None:
    cluster.start_controller(namespace)
    done = cluster.run("site", "create", namespace, "--enable-link-access", "-n", namespace)
    assert done.stdout.splitlines() == ["Waiting for status...", f'Site "{namespace}" is ready.']


def _issue(cluster: Cluster, namespace: str, path: Path, *args: str) -> dict[str, Any]:
    cluster.run("access-token", "issue", str(path), "-n", namespace, *args)
    token: dict[str, Any] = yaml.safe_load(path.read_text())
    return token


def _link_ready(cluster: Cluster, namespace: str, name: str) -> bool:
    for link in cluster.objects("links", namespace):
        if link["metadata"]["name"] == name:
            return (link.get("status") or {}).get("status") == "Ready"
    return False


def _redemptions(cluster: Cluster, namespace: str) -> dict[str, int]:
    return {g["metadata"]["name"]: int((g.get("status") or {}).get("redemptions") or 0)
            for g in cluster.objects("accessgrants", namespace)}


# --- tests --------------------------------------------------------------------------------


def test_site_lifecycle(cluster: Cluster) -> None:
    cluster.start_controller("west")
    # -n is not given: the kubeconfig context's namespace (west) is used, as kubectl does.
    created = cluster.run("site", "create", "west", "--enable-link-access")
    assert created.stdout == 'Waiting for status...\nSite "west" is ready.\n'
    (site,) = cluster.objects("sites", "west")
    assert site["status"]["status"] == "Ready"
    assert {c["type"] for c in site["status"]["conditions"]} >= {
        "Configured", "Running", "Resolved", "Ready"}
    endpoints = {e["name"]: e for e in site["status"]["endpoints"]}
    assert endpoints["inter-router"]["host"] == "127.0.0.1"

    table = cluster.run("site", "status").stdout.splitlines()
    assert table[0].split()[:3] == ["NAME", "STATUS", "SITES-IN-NETWORK"]
    assert table[1].split()[:2] == ["west", "Ready"]
    shown = json.loads(cluster.run("site", "status", "-o", "json").stdout)
    assert shown["metadata"]["name"] == "west" and shown["kind"] == "Site"

    again = cluster.fails("site", "create", "west")
    assert again.stderr.startswith("Error: A site resource already exists")

    updated = cluster.run("site", "update", "--disable-link-access")
    assert updated.stdout.endswith('Site "west" is updated.\n')
    assert cluster.objects("sites", "west")[0]["status"]["endpoints"] == []
    cluster.run("site", "update", "--enable-link-access")

    # The controller's secrets: the site CA, server certificates.
    secrets = {s["metadata"]["name"] for s in cluster.objects("secrets", "west")}
    assert {"skupper-site-ca", "skupper-site-server", "skupper-grant-server"} <= secrets

    deleted = cluster.run("site", "delete", "west")
    assert deleted.stdout == 'Waiting for deletion to complete...\nSite "west" is deleted.\n'
    assert cluster.objects("sites", "west") == []
    missing = cluster.fails("site", "status")
    assert missing.stderr == (
        'Error: No site resource exists: there is no site in namespace "west". '
        'Create one with "skupper site create <name>".\n')
    assert missing.returncode == 1


def test_issue_and_redeem_through_the_api(cluster: Cluster, tmp_path: Path) -> None:
    _site(cluster, "west")
    _site(cluster, "east")
    path = tmp_path / "token.yaml"
    issued = cluster.run("access-token", "issue", str(path), "-n", "west")
    lines = issued.stdout.splitlines()
    assert lines[0] == "Waiting for status..."
    assert lines[1].startswith('Grant "west-') and lines[1].endswith('" is ready.')
    assert lines[2] == f"Token file {path} created."
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = yaml.safe_load(path.read_text())
    assert token["kind"] == "AccessToken" and token["spec"]["url"].startswith("https://127.0.0.1:")

    redeemed = cluster.run("access-token", "redeem", str(path), "-n", "east")
    name = token["metadata"]["name"]
    assert redeemed.stdout == (f'Waiting for status...\nLink "{name}" is active.\n'
                               f"You can now safely delete {path}.\n")
    (access_token,) = cluster.objects("accesstokens", "east")
    assert access_token["status"]["redeemed"] is True
    assert {c["type"]: c["status"] for c in access_token["status"]["conditions"]} == {
        "Redeemed": "True"}
    assert _redemptions(cluster, "west") == {name: 1}
    assert _link_ready(cluster, "east", name)

    east_links = cluster.run("link", "status", "-n", "east").stdout.splitlines()
    assert east_links[1].split()[:4] == [name, "outgoing", "Ready", "west"]
    west_links = _wait(lambda: [line for line in cluster.run(
        "link", "status", "-n", "west").stdout.splitlines() if "incoming" in line],
        "west sees the incoming link")
    assert west_links[0].split()[:4] == [name, "incoming", "Ready", "east"]
    grants = cluster.run("access-grant", "status", "-n", "west").stdout.splitlines()
    assert grants[1].split()[:2] == [name, "1/1"]

    # The same token again: refused by the grant server, in the local platform's words.
    cluster.run("link", "delete", name, "-n", "east")
    again = cluster.fails("access-token", "redeem", str(path), "-n", "east")
    assert again.stdout == ""
    assert again.stderr == (
        f"Error: Redeeming the token at {token['spec']['url']} failed: the token has already "
        "been used as many times as it allows. Ask the issuing site for a new token.\n")
    assert cluster.objects("accesstokens", "east") == []  # nothing left behind
    assert not [s for s in cluster.objects("secrets", "east") if s["metadata"]["name"] == name]
    assert _redemptions(cluster, "west") == {name: 1}

    assert cluster.run("access-grant", "delete", name, "-n", "west").stdout.endswith(
        f'Grant "{name}" is deleted.\n')


def test_concurrent_redeemers_get_exactly_the_allowed_uses(cluster: Cluster,
                                                           tmp_path: Path) -> None:
    """The grant issue's exactness test, on the Kubernetes store: 20 redeemers, 5 uses."""
    _site(cluster, "west")
    token = yaml.safe_load(_issue_path(cluster, tmp_path, "--redemptions-allowed", "5")
                           .read_text())
    results: list[tuple[int, str]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(20)

    def redeem(index: int) -> None:
        barrier.wait(timeout=30)
        try:
            outcome = redeem_post(token, name=f"east-link-{index}", subject=f"east-{index}")
        except Exception as exc:
            outcome = (-1, repr(exc))
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=redeem, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] * 5 + [404] * 15, results
    assert {body.strip() for s, body in results if s == 404} == {"No such access granted"}
    assert _redemptions(cluster, "west") == {token["metadata"]["name"]: 5}


def _issue_path(cluster: Cluster, tmp_path: Path, *args: str) -> Path:
    path = tmp_path / f"token-{len(list(tmp_path.glob('token-*')))}.yaml"
    _issue(cluster, "west", path, *args)
    return path


def test_controller_restart_mid_redemption(cluster: Cluster, tmp_path: Path) -> None:
    """East's controller dies while a redemption waits; a new one finishes it, once."""
    _site(cluster, "west")
    _site(cluster, "east")
    path = tmp_path / "token.yaml"
    token = _issue(cluster, "west", path)
    name = token["metadata"]["name"]
    cluster.kill_controller("east")  # its lease stays fresh for a while: the CLI goes ahead
    redeem = subprocess.Popen(
        [SKUPPER, "access-token", "redeem", str(path), "-n", "east", "--timeout", "60s"],
        env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait(lambda: cluster.objects("accesstokens", "east"), "the AccessToken is created")
        time.sleep(0.5)
        assert _redemptions(cluster, "west") == {name: 0}  # nobody redeemed it yet
        cluster.start_controller("east")
        out, err = redeem.communicate(timeout=90)
    finally:
        if redeem.poll() is None:
            redeem.kill()
            redeem.wait()
    assert redeem.returncode == 0, err
    assert out.endswith(f'Link "{name}" is active.\nYou can now safely delete {path}.\n')
    assert _redemptions(cluster, "west") == {name: 1}

    # Both controllers die with the link up; new ones bring it back, with no new redemption.
    # (The dialing side first: a listener killed with live connections leaves sockets that
    # hold its port for a moment on one machine. In a cluster, a pod restart has its own
    # network namespace, so the port is always free.)
    cluster.kill_controller("east")
    cluster.kill_controller("west")
    cluster.start_controller("west")
    _wait(lambda: "link access on" in cluster.since_last_start("west"), "west listens")
    assert "is taken" not in cluster.since_last_start("west")
    cluster.start_controller("east")
    _wait(lambda: f"link {name} to west" in cluster.since_last_start("east")
          and "is operational" in cluster.since_last_start("east"), "the link is back",
          timeout=30)
    _wait(lambda: _link_ready(cluster, "east", name), "the link's status is Ready")
    (access_token,) = cluster.objects("accesstokens", "east")
    assert access_token["status"]["redeemed"] is True
    assert _redemptions(cluster, "west") == {name: 1}
    assert "redeemed" not in cluster.since_last_start("east")  # no second redemption


def test_local_site_redeems_a_kubernetes_token_and_back(
        cluster: Cluster, skupper: Any, tmp_path: Path) -> None:
    """Across platforms, both ways, with the links live (over loopback)."""
    _site(cluster, "west")
    skupper.run("site", "create", "local", "--enable-link-access", "-n", "local")

    kube_token = tmp_path / "from-kubernetes.yaml"
    name = _issue(cluster, "west", kube_token)["metadata"]["name"]
    done = skupper.run("access-token", "redeem", str(kube_token), "-n", "local")
    assert f'Link "{name}" is active.' in done.stdout
    links = skupper.run("link", "status", "-n", "local").stdout.splitlines()
    assert links[1].split()[:4] == [name, "outgoing", "Ready", "west"]
    _wait(lambda: any("incoming" in line and "local" in line for line in cluster.run(
        "link", "status", "-n", "west").stdout.splitlines()), "west sees the local site")

    local_token = tmp_path / "from-local.yaml"
    skupper.run("access-token", "issue", str(local_token), "-n", "local")
    back = yaml.safe_load(local_token.read_text())["metadata"]["name"]
    done = cluster.run("access-token", "redeem", str(local_token), "-n", "west")
    assert f'Link "{back}" is active.' in done.stdout
    assert _link_ready(cluster, "west", back)
    _wait(lambda: any("incoming" in line and back in line for line in skupper.run(
        "link", "status", "-n", "local").stdout.splitlines()), "the local site sees west")


def test_errors_are_one_clear_line(cluster: Cluster, tmp_path: Path) -> None:
    # No controller in the namespace.
    stopped = cluster.fails("site", "create", "east", "-n", "east")
    assert stopped.returncode == 1
    assert stopped.stderr.startswith("Error: The Skupper controller is not running: no "
                                     'controller holds the lease "skupper-controller" in '
                                     'namespace "east". Install it with "kubectl apply -f '
                                     'deploy/ -n east"'), stopped.stderr
    assert len(stopped.stderr.splitlines()) == 1

    # The CRDs are not installed.
    with DoubleThread() as bare:
        config = write_kubeconfig(tmp_path / "bare", bare.url, "west")
        create_namespace(bare, "west")
        done = cluster.fails("site", "status", env=kube_env(cluster.env, config))
        assert done.stderr == (
            "Error: The Skupper CRDs are not installed in the cluster: the API server at "
            f"{bare.url} does not serve sites.skupper.io/v2alpha1. Install them with "
            '"kubectl apply -f deploy/" (see the README).\n')

    # The API server is unreachable.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = write_kubeconfig(tmp_path / "gone", f"http://127.0.0.1:{port}", "west")
    done = cluster.fails("site", "status", env=kube_env(cluster.env, config))
    assert done.stderr.startswith(
        f"Error: Cannot reach the Kubernetes API server at http://127.0.0.1:{port}: ")
    assert done.stderr.endswith("Check --kubeconfig and --context, and that the cluster is "
                                "running.\n")
    assert len(done.stderr.splitlines()) == 1

    # A context that does not exist; a kubeconfig that does not exist.
    done = cluster.fails("site", "status", "--context", "nope")
    assert done.stderr.startswith('Error: No context "nope" in the kubeconfig')
    done = cluster.fails("site", "status", "--kubeconfig", str(tmp_path / "missing"))
    assert done.stderr.startswith(f"Error: No kubeconfig at {tmp_path / 'missing'}")

    # system stop has no meaning here; system status reads the lease.
    cluster.start_controller("west")
    done = cluster.fails("system", "stop")
    assert "does not apply to the kubernetes platform" in done.stderr
    assert cluster.run("system", "status").stdout.startswith("Controller: running")


def test_grant_revoke_on_kubernetes(cluster: Cluster, tmp_path: Path) -> None:
    _site(cluster, "west")
    _site(cluster, "east")
    path = tmp_path / "token.yaml"
    name = _issue(cluster, "west", path)["metadata"]["name"]
    cluster.run("access-token", "redeem", str(path), "-n", "east")
    done = cluster.run("access-grant", "revoke", name, "-n", "west")
    assert done.stdout.splitlines()[-1].startswith(f'Grant "{name}" is revoked;')
    _wait(lambda: not _link_ready(cluster, "east", name), "the revoked link closes")


def test_deploy_applies_as_the_whole_install(cluster: Cluster) -> None:
    """What `kubectl apply -f deploy/ -n west` made: checked in the API, not just the files."""
    kinds = {(d["kind"], d["metadata"]["name"]) for d in manifests()}
    assert ("Deployment", "skupper-controller") in kinds
    assert {("Service", "skupper-router"), ("Service", "skupper-grant-server")} <= kinds
    assert len(cluster.objects("deployments", "west")) == 1
    assert {s["metadata"]["name"] for s in cluster.objects("services", "west")} == {
        "skupper-router", "skupper-grant-server", "skupper-metrics"}
