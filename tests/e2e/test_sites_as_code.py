"""Sites as code, as a user runs them: ``generate``, ``system apply -f`` and ``system delete
-f`` with real daemons, a real grant server and real links."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests_support import Skupper, free_port, one_error_line

pytestmark = pytest.mark.e2e

FILES = Path(__file__).parent / "upstream_files"


def _json(skupper: Skupper, *args: str) -> Any:
    return json.loads(skupper.run(*args, "-o", "json").stdout)


def _write(path: Path, *texts: str) -> Path:
    path.write_text("---\n".join(texts))
    return path


def _generated(skupper: Skupper, port: int) -> list[str]:
    return [skupper.run("site", "generate", "west", "--enable-link-access").stdout,
            skupper.run("listener", "generate", "backend", str(port)).stdout,
            skupper.run("connector", "generate", "backend", str(free_port()),
                        "--host", "127.0.0.1").stdout]


def test_generate_creates_nothing_and_prints_what_create_stores(skupper: Skupper) -> None:
    printed = yaml.safe_load(skupper.run("listener", "generate", "db", "5432", "-r", "pg").stdout)
    assert printed == {"apiVersion": "skupper.io/v2alpha1", "kind": "Listener",
                       "metadata": {"name": "db"},
                       "spec": {"routingKey": "pg", "host": "0.0.0.0", "port": 5432}}
    as_json = json.loads(skupper.run("site", "generate", "west", "-o", "json").stdout)
    assert as_json == yaml.safe_load(skupper.run("site", "create", "west", "-o", "yaml").stdout)
    assert not (skupper.home / "data" / "skupper").exists()  # no store, no daemon
    one_error_line(skupper.fails("connector", "generate", "db", "70000"), "port")


def test_round_trip_and_idempotent_reapply(skupper: Skupper, tmp_path: Path) -> None:
    port = free_port()
    texts = _generated(skupper, port)
    site_file = _write(tmp_path / "west.yaml", *texts)
    first = skupper.run("system", "apply", "-f", str(site_file)).stdout.splitlines()
    assert first[:3] == ['Site "west" created', 'Listener "backend" created',
                         'Connector "backend" created']
    assert 'Listener "backend" is ready.' in first
    for kind, text in zip(("site", "listener", "connector"), texts, strict=True):
        generated = yaml.safe_load(text)
        args = (kind, "status") if kind == "site" else (kind, "status", "backend")
        assert _json(skupper, *args)["spec"] == generated["spec"]
    before = {kind: _json(skupper, kind, "status", "backend")["metadata"]
              for kind in ("listener", "connector")}
    again = skupper.run("system", "apply", "-f", str(site_file)).stdout.splitlines()
    assert again[:3] == ['Site "west" unchanged', 'Listener "backend" unchanged',
                         'Connector "backend" unchanged']
    for kind, meta in before.items():
        now = _json(skupper, kind, "status", "backend")["metadata"]
        assert (now["resourceVersion"], now["generation"]) == \
            (meta["resourceVersion"], meta["generation"])
    assert _json(skupper, "listener", "status", "backend")["status"]["status"] == "Ready"
    moved = texts[1].replace(f"port: {port}", f"port: {free_port()}")
    changed = skupper.run("system", "apply", "-f", "-", input=moved).stdout.splitlines()
    assert changed[0] == 'Listener "backend" configured'
    assert _json(skupper, "listener", "status", "backend")["metadata"]["generation"] == 2


def test_a_bad_document_in_the_middle_applies_nothing(skupper: Skupper, tmp_path: Path) -> None:
    texts = _generated(skupper, free_port())
    bad = texts[2].replace("port:", "prot:")
    done = skupper.fails("system", "apply", "-f", str(_write(tmp_path / "w.yaml", texts[0],
                                                                texts[1], bad)))
    line = one_error_line(done, 'document 3 (Connector "backend")', "spec.prot",
                          "Nothing of the file was applied")
    assert done.stdout == ""
    assert "Site" not in line.split("document")[0]
    one_error_line(skupper.fails("site", "status"), "No site resource exists")
    assert skupper.daemon_pid() is None


def test_upstream_files_apply_unchanged(skupper: Skupper, tmp_path: Path) -> None:
    # Only the listener ports are replaced by free ones (a port others hold would not listen).
    text = (FILES / "nonkube-generate.yaml").read_text().replace("18481", str(free_port()))
    done = skupper.run("system", "apply", "-f", str(_write(tmp_path / "up.yaml", text)))
    assert done.stdout.splitlines()[:4] == [
        'Site "west" created', 'RouterAccess "router-access-west" created (the Site\'s link '
        "access)", 'Listener "backend" created', 'Connector "backend" created']
    site = _json(skupper, "site", "status")
    assert site["spec"]["linkAccess"] == "default" and site["status"]["endpoints"]
    west = (FILES / "hello-world-west.yaml").read_text().replace("18480", str(free_port()))
    done = skupper.run("system", "apply", "-f", "-", "-n", "hello-world-west", input=west)
    # Applied before the site with its connector: configured, and waiting for nobody.
    assert 'Listener "backend" is configured (No matching connectors).' in done.stdout
    one_error_line(skupper.fails("system", "apply", "-f", "-", "-n", "elsewhere", input=west),
                   'metadata.namespace is "hello-world-west"')


def test_json_list_from_standard_input(skupper: Skupper) -> None:
    text = (FILES / "list.json").read_text()
    done = skupper.run("system", "apply", "-f", "-", "-n", "east", input=text)
    assert done.stdout.splitlines()[:2] == ['Site "east" created', 'Connector "db" created']
    assert _json(skupper, "connector", "status", "db", "-n", "east")["spec"]["port"] == 18483


def test_token_applied_twice_spends_one_redemption(west: Skupper, tmp_path: Path) -> None:
    token = tmp_path / "token.yaml"
    west.run("access-token", "issue", str(token), "--redemptions-allowed", "1")
    east_file = _write(tmp_path / "east.yaml", west.run("site", "generate", "east").stdout,
                       token.read_text())
    name = yaml.safe_load(token.read_text())["metadata"]["name"]
    first = west.run("system", "apply", "-f", str(east_file), "-n", "east").stdout
    assert f'AccessToken "{name}" created (redeemed)' in first
    assert f'Link "{name}" is ready.' in first
    again = west.run("system", "apply", "-f", str(east_file), "-n", "east").stdout
    assert f'AccessToken "{name}" unchanged (redeemed)' in again
    (grant,) = _json(west, "access-grant", "status")["items"]
    assert grant["status"]["redemptions"] == 1
    assert "c0de" not in first and yaml.safe_load(token.read_text())["spec"]["code"] not in first


def _link_and_secret(west: Skupper, name: str, site: str = "east") -> str:
    """A Link and its Secret as a generated link is shaped: a client certificate issued
    from west's site CA to the dialing ``site`` (the hello is bound to it), and west's
    advertised endpoints."""
    from skupper.certs.issue import KeyPair, issue_certificate

    folder = west.namespace_dir() / "secrets" / "skupper-site-ca"
    ca = KeyPair(cert_pem=(folder / "tls.crt").read_bytes(),
                 key_pem=(folder / "tls.key").read_bytes())
    client = issue_certificate(ca, site, usage="client")
    endpoints = _json(west, "site", "status")["status"]["endpoints"]
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
              "metadata": {"name": name},
              "data": {"ca.crt": base64.b64encode(ca.cert_pem).decode(),
                       "tls.crt": base64.b64encode(client.cert_pem).decode(),
                       "tls.key": base64.b64encode(client.key_pem).decode()}}
    link = {"apiVersion": "skupper.io/v2alpha1", "kind": "Link", "metadata": {"name": name},
            "spec": {"endpoints": [{"name": e["name"], "host": e["host"], "port": e["port"]}
                                   for e in endpoints],
                     "cost": 2, "tlsCredentials": name}}
    return yaml.safe_dump_all([link, secret])


def test_link_and_secret_link_without_a_token(west: Skupper, tmp_path: Path) -> None:
    text = west.run("site", "generate", "east").stdout + "---\n" + _link_and_secret(west, "to-west")
    done = west.run("system", "apply", "-f", "-", "-n", "east", input=text)
    assert done.stdout.splitlines()[:3] == ['Site "east" created', 'Secret "to-west" created',
                                            'Link "to-west" created']
    assert 'Link "to-west" is ready.' in done.stdout
    link = _json(west, "link", "status", "to-west", "-n", "east")
    assert link["status"]["remoteSiteName"] == "west" and link["spec"]["cost"] == 2
    again = west.run("system", "apply", "-f", "-", "-n", "east", input=text).stdout
    assert 'Secret "to-west" unchanged' in again and 'Link "to-west" unchanged' in again
    assert "PRIVATE KEY" not in done.stdout + done.stderr


def test_reserved_names_and_missing_secrets_are_refused(west: Skupper, tmp_path: Path) -> None:
    west.run("site", "create", "east", "-n", "east")
    text = _link_and_secret(west, "peer")
    reserved = text.replace("name: peer", "name: skupper-site-ca")
    one_error_line(west.fails("system", "apply", "-f", "-", "-n", "east", input=reserved),
                   "reserved for the site's own credentials")
    link_only = yaml.safe_dump(next(d for d in yaml.safe_load_all(text) if d["kind"] == "Link"))
    one_error_line(west.fails("system", "apply", "-f", "-", "-n", "east", input=link_only),
                   'names the Secret "peer", which is neither in the file nor at the site')
    assert _json(west, "link", "status", "-n", "east")["items"] == []


def test_a_timeout_names_the_resource_and_keeps_it(west: Skupper, tmp_path: Path) -> None:
    west.run("site", "create", "east", "-n", "east")
    dead = free_port()  # nothing listens there: the link keeps dialing
    text = _link_and_secret(west, "nowhere")
    spec_port = str(_json(west, "site", "status")["status"]["endpoints"][0]["port"])
    text = text.replace(f"'{spec_port}'", f"'{dead}'").replace(f"port: {spec_port}",
                                                               f"port: '{dead}'")
    done = west.fails("system", "apply", "-f", "-", "-n", "east", "--timeout", "2s",
                      input=text)
    one_error_line(done, 'Link "nowhere" is not ready', "Nothing was rolled back")
    assert _json(west, "link", "status", "nowhere", "-n", "east")["metadata"]["name"] == "nowhere"


def test_delete_removes_what_the_file_names(skupper: Skupper, tmp_path: Path) -> None:
    site_file = _write(tmp_path / "west.yaml", *_generated(skupper, free_port()))
    skupper.run("system", "apply", "-f", str(site_file))
    extra = skupper.run("listener", "generate", "gone", "1234").stdout
    partial = _write(tmp_path / "partial.yaml", extra, _generated(skupper, 1)[1])
    done = skupper.run("system", "delete", "-f", str(partial))
    # The reverse of the order apply writes in.
    assert done.stdout.splitlines() == ['Listener "backend" deleted', 'Listener "gone" not found']
    done = skupper.run("system", "delete", "-f", str(site_file))
    assert done.stdout.splitlines() == ['Connector "backend" deleted',
                                        'Listener "backend" not found', 'Site "west" deleted']
    assert not skupper.namespace_dir().exists()


def test_kubernetes_is_pointed_at_kubectl(skupper: Skupper, tmp_path: Path) -> None:
    file = _write(tmp_path / "w.yaml", skupper.run("site", "generate", "west").stdout)
    for action in ("apply", "delete"):
        one_error_line(skupper.fails("system", action, "-f", str(file), "--platform",
                                     "kubernetes"), f'kubectl {action} -f')


def test_site_create_wait_and_delete_all(skupper: Skupper) -> None:
    done = skupper.run("site", "create", "west", "--wait", "none")
    assert done.stdout.splitlines() == ['Site "west" is created.']
    skupper.run("system", "start")  # waits until it is ready
    skupper.run("listener", "create", "backend", str(free_port()))
    skupper.run("connector", "create", "backend", "1234", "--wait", "none")
    done = skupper.run("site", "delete", "--all")
    assert done.stdout.splitlines() == ["Waiting for deletion to complete...",
                                        'Listener "backend" is deleted.',
                                        'Connector "backend" is deleted.',
                                        'Site "west" is deleted.']
    done = skupper.run("site", "create", "east", "--wait", "configured")
    assert done.stdout.splitlines()[-1] == 'Site "east" is configured.'


def test_wait_modes_and_a_stopped_site(skupper: Skupper, tmp_path: Path) -> None:
    site_file = _write(tmp_path / "west.yaml", *_generated(skupper, free_port()))
    done = skupper.run("system", "apply", "-f", str(site_file), "--wait", "none")
    assert done.stdout.splitlines() == ['Site "west" created', 'Listener "backend" created',
                                        'Connector "backend" created']
    skupper.run("system", "start")  # the daemon the apply started, up and ready
    done = skupper.run("system", "apply", "-f", str(site_file), "--wait", "configured")
    assert done.stdout.splitlines()[-3:] == ['Site "west" is configured.',
                                             'Listener "backend" is configured.',
                                             'Connector "backend" is configured.']
    skupper.run("system", "stop")
    moved = _write(tmp_path / "moved.yaml", *_generated(skupper, free_port()))
    one_error_line(skupper.fails("system", "apply", "-f", str(moved)), "The site is stopped",
                   "--wait none", "Nothing of the file was applied")
    assert _json(skupper, "listener", "status", "backend")["metadata"]["generation"] == 1
    done = skupper.run("system", "apply", "-f", str(moved), "--wait", "none")
    assert 'Listener "backend" configured' in done.stdout.splitlines()


def test_a_grant_in_a_file_is_served_or_says_why_not(west: Skupper) -> None:
    grant = yaml.safe_dump({"apiVersion": "skupper.io/v2alpha1", "kind": "AccessGrant",
                            "metadata": {"name": "for-east"},
                            "spec": {"redemptionsAllowed": 2, "expirationWindow": "1h"}})
    done = west.run("system", "apply", "-f", "-", input=grant)
    assert done.stdout.splitlines() == ['AccessGrant "for-east" created', "Waiting for status...",
                                        'AccessGrant "for-east" is ready.']
    status = _json(west, "access-grant", "status", "for-east")["status"]
    assert status["url"].startswith("https://127.0.0.1:") and status["code"] == "<redacted>"
    west.run("site", "create", "closed", "-n", "closed")  # no link access: no grant server
    done = west.fails("system", "apply", "-f", "-", "-n", "closed", input=grant)
    one_error_line(done, 'AccessGrant "for-east" is not ready', "Link access is not enabled",
                   "Nothing was rolled back")


def test_a_refused_token_stays_with_its_reason_and_is_not_presented_again(
        west: Skupper, tmp_path: Path) -> None:
    token = tmp_path / "token.yaml"
    west.run("access-token", "issue", str(token))
    west.run("site", "create", "north", "-n", "north")
    west.run("access-token", "redeem", str(token), "-n", "north")  # its only use
    name = yaml.safe_load(token.read_text())["metadata"]["name"]
    west.run("site", "create", "east", "-n", "east")
    first = west.fails("system", "apply", "-f", str(token), "-n", "east")
    assert f'AccessToken "{name}" created (not redeemed: ' in first.stdout
    one_error_line(first, f'AccessToken "{name}" is not ready', "Nothing was rolled back")
    again = west.fails("system", "apply", "-f", str(token), "-n", "east")
    assert f'AccessToken "{name}" unchanged (not redeemed: ' in again.stdout
    (grant,) = _json(west, "access-grant", "status")["items"]
    assert grant["status"]["redemptions"] == 1
    assert _json(west, "link", "status", "-n", "east")["items"] == []
    # The grant server heard the refused token once: the second apply did not present it.
    assert _used_up_attempts(west) == 1


def _used_up_attempts(west: Skupper) -> float:
    import re
    import urllib.request

    status = west.run("system", "status").stdout
    address = re.search(r"Metrics: (http://127\.0\.0\.1:\d+/metrics)", status)
    assert address is not None, status
    with urllib.request.urlopen(address.group(1), timeout=10) as response:
        text = response.read().decode()
    found = re.search(r'^skupper_grant_redemptions_total\{outcome="used-up"\} (\S+)$', text,
                      re.MULTILINE)
    return float(found.group(1)) if found else 0.0
