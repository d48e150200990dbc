"""``skupper site`` and ``skupper system`` as a user runs them: real daemons, real files."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import ssl
import stat
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests_support import alive, one_error_line

pytestmark = pytest.mark.e2e

NO_SITE = "No site resource exists"


# --- helpers ------------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)




def _wait_dead(pid: int, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.02)
    return False




def _site(skupper: Any, namespace: str = "default") -> dict[str, Any]:
    return dict(json.loads(skupper.run("site", "status", "-o", "json", "-n", namespace).stdout))


def _ports(site: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["port"] for e in site.get("status", {}).get("endpoints") or []}


def _grants(skupper: Any, namespace: str = "default") -> list[dict[str, Any]]:
    out = skupper.run("access-grant", "status", "-o", "json", "-n", namespace).stdout
    return list(json.loads(out)["items"])


def _port_open(port: int | str) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", int(port)), timeout=2):
            return True
    except ConnectionRefusedError:
        return False


def _redeem(token_file: Path, subject: str = "east") -> tuple[int, str]:
    """Upstream's redemption request, standard library only."""
    spec = yaml.safe_load(token_file.read_text())["spec"]
    url = urlsplit(spec["url"])
    ctx = ssl.create_default_context(cadata=spec["ca"])
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    conn = http.client.HTTPSConnection(url.hostname or "", url.port, context=ctx, timeout=10)
    try:
        conn.request("POST", url.path, body=spec["code"].encode(),
                     headers={"name": "east-link", "subject": subject})
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


# --- create -------------------------------------------------------------------------------


def test_create_prints_two_lines_and_keeps_state_private(skupper: Any) -> None:
    done = skupper.run("site", "create", "west", "--enable-link-access")
    assert done.returncode == 0
    assert done.stdout == 'Waiting for status...\nSite "west" is ready.\n'
    assert done.stderr == ""

    root = skupper.namespace_dir()
    assert _mode(root) == 0o700
    assert (root / "store.db").is_file()
    assert _mode(root / "store.db") == 0o600
    secrets = root / "secrets"
    assert _mode(secrets) == 0o700
    keys = sorted(secrets.glob("*/tls.key"))
    assert {k.parent.name for k in keys} >= {"skupper-site-ca", "skupper-site-server"}
    for path in secrets.rglob("*"):
        if path.is_symlink():
            continue
        assert _mode(path) == (0o700 if path.is_dir() else 0o600), path
    pid = skupper.daemon_pid()
    assert pid is not None and alive(pid)

    again = skupper.fails("site", "create", "west", "--enable-link-access")
    one_error_line(again, "A site resource already exists")
    other = skupper.fails("site", "create", "east")
    one_error_line(other, "A site resource already exists")
    # The refused creates changed nothing: same daemon, same site.
    assert skupper.daemon_pid() == pid
    assert _site(skupper)["metadata"]["name"] == "west"


def test_create_refuses_a_name_with_a_trailing_newline(skupper: Any) -> None:
    # re.match with '$' once let "west\n" through as a site name and "nl\n" as a namespace.
    for args, what in ((("west\n",), "Invalid site name"),
                       (("west", "-n", "nl\n"), "Invalid namespace")):
        done = skupper.fails("site", "create", *args)
        assert done.stderr.startswith("Error: " + what), done.stderr
    assert not (skupper.home / "data" / "skupper" / "namespaces" / "nl\n").exists()
    assert not skupper.namespace_dir().exists()


def test_error_stays_one_line_when_the_input_has_a_newline(skupper: Any) -> None:
    one_error_line(skupper.fails("site", "create", "west\n"), "Invalid site name")


def test_create_refuses_an_invalid_name(skupper: Any) -> None:
    one_error_line(skupper.fails("site", "create", "West_1"), "Invalid site name")
    assert not skupper.namespace_dir().exists()


# --- status -------------------------------------------------------------------------------


def test_status_table_json_and_yaml(west: Any) -> None:
    lines = west.run("site", "status").stdout.splitlines()
    assert lines[0].split()[:4] == ["NAME", "STATUS", "SITES-IN-NETWORK", "SERVICES-IN-NETWORK"]
    assert lines[1].split()[:4] == ["west", "Ready", "1", "0"]

    site = _site(west)
    assert site["apiVersion"] == "skupper.io/v2alpha1"
    assert site["kind"] == "Site"
    assert site["metadata"]["name"] == "west"
    assert site["spec"]["linkAccess"] == "default"
    status = site["status"]
    assert status["status"] == "Ready"
    assert status["message"] == "OK"
    endpoints = status["endpoints"]
    assert sorted(e["name"] for e in endpoints) == ["edge", "inter-router"]
    for endpoint in endpoints:
        assert endpoint["host"] == "127.0.0.1"
        assert isinstance(endpoint["port"], str)
        floor = 55671 if endpoint["name"] == "inter-router" else 45671
        assert floor <= int(endpoint["port"]) < floor + 200
        assert _port_open(endpoint["port"])
    ready = [c for c in status["conditions"] if c["type"] == "Ready"]
    assert ready and ready[0]["status"] == "True"

    as_yaml = yaml.safe_load(west.run("site", "status", "-o", "yaml").stdout)
    assert as_yaml == site


# --- update -------------------------------------------------------------------------------


def test_update_enables_then_disables_link_access(skupper: Any) -> None:
    skupper.run("site", "create", "west")
    assert _ports(_site(skupper)) == {}

    done = skupper.run("site", "update", "--enable-link-access")
    assert done.stdout.splitlines()[-1] == 'Site "west" is updated.'
    site = _site(skupper)
    assert site["spec"]["linkAccess"] == "default"
    ports = _ports(site)
    assert sorted(ports) == ["edge", "inter-router"]
    assert int(ports["inter-router"]) >= 55671 and int(ports["edge"]) >= 45671
    assert all(_port_open(p) for p in ports.values())

    done = skupper.run("site", "update", "--disable-link-access")
    assert done.stdout.splitlines()[-1] == 'Site "west" is updated.'
    site = _site(skupper)
    assert site["spec"]["linkAccess"] == "none"
    assert _ports(site) == {}
    assert site["status"]["status"] == "Ready"
    for port in ports.values():
        assert not _port_open(port), f"link port {port} still accepts connections"


def test_update_that_changes_nothing_completes_at_once(west: Any) -> None:
    # A no-op update makes no store event; it once waited out the whole --timeout.
    started = time.monotonic()
    done = west.run("site", "update", "--enable-link-access", "--timeout", "5s")
    assert done.stdout.splitlines()[-1] == 'Site "west" is updated.'
    assert time.monotonic() - started < 4


def test_no_site_is_one_error_line_for_update_status_delete(skupper: Any) -> None:
    for args in (
        ("site", "update", "--enable-link-access"),
        ("site", "status"),
        ("site", "status", "-o", "json"),
        ("site", "delete"),
    ):
        one_error_line(skupper.fails(*args), NO_SITE)
    # Asking about a site creates nothing.
    assert not skupper.namespace_dir().exists()


# --- stop, start, crash -------------------------------------------------------------------


def _snapshot(skupper: Any) -> tuple[str, dict[str, str], list[tuple[str, str]]]:
    site = _site(skupper)
    grants = [(g["metadata"]["name"], g["metadata"]["uid"]) for g in _grants(skupper)]
    return site["metadata"]["uid"], _ports(site), grants


def _assert_kept(skupper: Any, before: tuple[Any, ...]) -> None:
    """Same site, same grants, same ports after a restart.

    The ports are free while the site is stopped: on a shared machine another site may
    take one in that moment. The daemon then moves on and says so in its log, and
    nothing this test checks can hold; anything else is a failure.
    """
    after = _snapshot(skupper)
    if after[1] != before[1]:
        log = (skupper.namespace_dir() / "logs" / "daemon.log").read_text()
        taken = [port for role, port in before[1].items()
                 if f"port {port} for {role} is taken" in log]
        if taken:
            pytest.skip(f"another process took port(s) {taken} while the site was stopped")
    assert after == before


def test_stop_and_start_keep_state_and_site_aliases_work(west: Any, tmp_path: Path) -> None:
    west.run("access-token", "issue", str(tmp_path / "token.yaml"), "--redemptions-allowed", "2")
    before = _snapshot(west)
    assert len(before[2]) == 1
    pid = west.daemon_pid()
    assert pid is not None

    done = west.run("system", "stop")
    assert "stopped" in done.stdout
    assert _wait_dead(pid)
    assert west.daemon_pid() is None
    table = west.run("site", "status").stdout.splitlines()
    assert table[1].split()[:2] == ["west", "Stopped"]
    assert _snapshot(west) == before  # status reads the store, daemon or not

    done = west.run("system", "start")
    assert done.stdout == 'Waiting for status...\nSite "west" is ready.\n'
    restarted = west.daemon_pid()
    assert restarted is not None and restarted != pid and alive(restarted)
    _assert_kept(west, before)
    assert _redeem(tmp_path / "token.yaml")[0] == 200

    west.run("site", "stop")
    assert _wait_dead(restarted)
    assert west.daemon_pid() is None
    done = west.run("site", "start")
    assert done.stdout.splitlines()[-1] == 'Site "west" is ready.'
    assert west.daemon_pid() is not None
    _assert_kept(west, before)
    assert _redeem(tmp_path / "token.yaml")[0] == 200


def test_kill_9_then_start_keeps_state_and_tokens(west: Any, tmp_path: Path) -> None:
    token = tmp_path / "token.yaml"
    west.run("access-token", "issue", str(token))
    before = _snapshot(west)
    pid = west.daemon_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    assert _wait_dead(pid)

    assert west.run("site", "status").stdout.splitlines()[1].split()[1] == "Stopped"
    done = west.run("system", "start")
    assert done.stdout.splitlines()[-1] == 'Site "west" is ready.'
    _assert_kept(west, before)
    status, body = _redeem(token)
    assert status == 200, body
    assert [g["status"]["redemptions"] for g in _grants(west)] == [1]


def test_stopped_site_refuses_updates_and_can_be_deleted(west: Any) -> None:
    pid = west.daemon_pid()
    assert pid is not None
    west.run("system", "stop")
    again = west.run("system", "stop")
    assert "was not running" in again.stdout
    one_error_line(west.fails("site", "update", "--disable-link-access"), "stopped",
                    "skupper system start")
    assert _site(west)["spec"]["linkAccess"] == "default"
    done = west.run("site", "delete")
    assert done.stdout.splitlines()[-1] == 'Site "west" is deleted.'
    assert not west.namespace_dir().exists()


def test_json_status_of_a_stopped_site_is_not_ready(west: Any) -> None:
    west.run("system", "stop")
    status = _site(west)["status"]
    running = [c for c in status["conditions"] if c["type"] == "Running"]
    assert status["status"] != "Ready"
    assert running and running[0]["status"] != "True"


# --- delete -------------------------------------------------------------------------------


def test_delete_removes_state_and_daemon(west: Any) -> None:
    pid = west.daemon_pid()
    assert pid is not None
    ports = _ports(_site(west))
    done = west.run("site", "delete")
    assert done.stdout == 'Waiting for deletion to complete...\nSite "west" is deleted.\n'
    assert not west.namespace_dir().exists()
    assert _wait_dead(pid, within=2)
    assert not any(_port_open(p) for p in ports.values())
    one_error_line(west.fails("site", "status"), NO_SITE)
    # A new site can take the namespace again.
    west.run("site", "create", "west")


def test_delete_by_another_name_is_refused(west: Any) -> None:
    one_error_line(west.fails("site", "delete", "east"), NO_SITE)
    assert west.namespace_dir().exists()
    assert _site(west)["status"]["status"] == "Ready"


# --- namespaces and platforms -------------------------------------------------------------


def test_two_namespaces_get_different_ports(skupper: Any) -> None:
    skupper.run("site", "create", "alpha", "--enable-link-access", "-n", "a")
    skupper.run("site", "create", "beta", "--enable-link-access", "-n", "b")
    a, b = _site(skupper, "a"), _site(skupper, "b")
    assert (a["metadata"]["name"], b["metadata"]["name"]) == ("alpha", "beta")
    ports_a, ports_b = _ports(a), _ports(b)
    assert sorted(ports_a) == sorted(ports_b) == ["edge", "inter-router"]
    assert not set(ports_a.values()) & set(ports_b.values())
    assert skupper.daemon_pid("a") != skupper.daemon_pid("b")
    one_error_line(skupper.fails("site", "status"), NO_SITE)  # "default" has no site


def test_kubeconfig_selects_kubernetes_when_no_platform_is_set(skupper: Any) -> None:
    kube = skupper.home / ".kube"
    kube.mkdir()
    (kube / "config").write_text("apiVersion: v1\nkind: Config\n")
    skupper.env.pop("SKUPPER_PLATFORM")
    done = skupper.fails("site", "create", "west")
    # The kubernetes platform was chosen: it reads the kubeconfig (an empty one here).
    one_error_line(done, f"Cannot use the kubeconfig {kube / 'config'}")
    assert not (skupper.home / "data" / "skupper").exists()
    # An explicit platform still wins over the kubeconfig.
    skupper.run("site", "create", "west", "--platform", "systemd")
    site = json.loads(skupper.run("site", "status", "-o", "json", "--platform", "systemd").stdout)
    assert site["metadata"]["name"] == "west"


# --- the command itself -------------------------------------------------------------------


def test_help_and_version(skupper: Any) -> None:
    done = skupper.run("--help")
    for group in ("site", "access-token", "access-grant", "system", "version"):
        assert group in done.stdout
    assert done.stderr == ""
    version = skupper.run("version").stdout
    assert version.startswith("skupper ")
    assert "v2alpha1" in version
    site_help = skupper.run("site", "create", "--help").stdout
    assert "--enable-link-access" in site_help


def test_token_and_grant_aliases(west: Any, tmp_path: Path) -> None:
    token = tmp_path / "token.yaml"
    done = west.run("token", "issue", str(token))
    assert f"Token file {token} created." in done.stdout
    name = yaml.safe_load(token.read_text())["metadata"]["name"]
    table = west.run("grant", "status").stdout
    assert name in table
    listed = json.loads(west.run("grant", "status", "-o", "json").stdout)
    assert [g["metadata"]["name"] for g in listed["items"]] == [name]
    done = west.run("grant", "delete", name)
    assert done.stdout.splitlines()[-1] == f'Grant "{name}" is deleted.'
    assert _grants(west) == []
