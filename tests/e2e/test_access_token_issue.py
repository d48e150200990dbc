"""The seed command, ``skupper access-token issue``, end to end against a real site daemon."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import ssl
import stat
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from cryptography import x509

from tests_support import one_error_line

pytestmark = pytest.mark.e2e

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


def _seed_output(grant: str, file: str, uses: str, period: str) -> str:
    """The usage text of the seed, line for line."""
    return (
        "Waiting for status...\n"
        f'Grant "{grant}" is ready.\n'
        f"Token file {file} created.\n"
        "\n"
        "Transfer this file to a remote site. At the remote site,\n"
        "create a link to this site using the 'skupper token redeem'\n"
        "command:\n"
        "\n"
        f"   $ skupper access-token redeem {file}\n"
        "\n"
        f"The token expires after {uses} or after {period}.\n"
    )


def _grants(skupper: Any) -> list[dict[str, Any]]:
    return list(json.loads(skupper.run("access-grant", "status", "-o", "json").stdout)["items"])


def _token(path: Path) -> dict[str, Any]:
    documents = list(yaml.safe_load_all(path.read_text()))
    assert len(documents) == 1
    return dict(documents[0])




def _redeem(spec: dict[str, Any], code: str | None = None) -> tuple[int, str]:
    url = urlsplit(spec["url"])
    ctx = ssl.create_default_context(cadata=spec["ca"])
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    conn = http.client.HTTPSConnection(url.hostname or "", url.port, context=ctx, timeout=10)
    try:
        conn.request("POST", url.path, body=(code or spec["code"]).encode(),
                     headers={"name": "east-link", "subject": "east"})
        response = conn.getresponse()
        return response.status, response.read().decode().strip()
    finally:
        conn.close()


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """A folder for token files, beside (not inside) the site's data home."""
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


# --- success ------------------------------------------------------------------------------


def test_default_issue_prints_the_seed_text_and_writes_a_private_token(
    west: Any, out: Path
) -> None:
    file = out / "token.yaml"
    started = datetime.now(UTC).replace(microsecond=0)
    done = west.run("access-token", "issue", str(file))
    assert done.stderr == ""
    match = re.match(rf'Waiting for status...\nGrant "(west-{UUID})" is ready\.\n', done.stdout)
    assert match, done.stdout
    name = match.group(1)
    assert done.stdout == _seed_output(name, str(file), "1 use", "15 minutes")

    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert sorted(p.name for p in out.iterdir()) == ["token.yaml"]
    token = _token(file)
    assert token["apiVersion"] == "skupper.io/v2alpha1"
    assert token["kind"] == "AccessToken"
    assert token["metadata"] == {"name": name}
    spec = token["spec"]
    assert sorted(spec) == ["ca", "code", "linkCost", "url"]
    assert re.fullmatch(r"[A-Za-z0-9]{24}", spec["code"])
    assert spec["linkCost"] == 1
    url = re.fullmatch(rf"https://127\.0\.0\.1:(\d+)/({UUID})", spec["url"])
    assert url, spec["url"]
    ca = x509.load_pem_x509_certificate(spec["ca"].encode())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert "ca: |" in file.read_text()  # a literal block, as upstream writes it

    (grant,) = _grants(west)
    assert grant["metadata"]["name"] == name
    assert grant["metadata"]["uid"] == url.group(2)
    assert grant["spec"]["redemptionsAllowed"] == 1
    assert grant["spec"]["expirationWindow"] == "15m0s"
    assert grant["status"]["status"] == "Ready"
    assert grant["status"]["redemptions"] == 0
    assert grant["status"]["url"] == spec["url"]
    expires = datetime.fromisoformat(grant["status"]["expirationTime"].replace("Z", "+00:00"))
    assert started + timedelta(minutes=14) <= expires <= started + timedelta(minutes=16)


def test_non_default_limits_and_cost(west: Any, out: Path) -> None:
    file = out / "a.yaml"
    done = west.run("access-token", "issue", str(file),
                    "--expiration-period", "24h", "--redemptions-allowed", "3")
    assert done.stdout.endswith("The token expires after 3 uses or after 24 hours.\n")
    assert f"   $ skupper access-token redeem {file}\n" in done.stdout
    first = _token(file)["metadata"]["name"]

    file_b = out / "b.yaml"
    done = west.run("access-token", "issue", str(file_b), "--expiration-window", "1h30m")
    assert done.stdout.endswith("after 1 use or after 1 hour and 30 minutes.\n")
    second = _token(file_b)["metadata"]["name"]

    file_c = out / "c.yaml"
    west.run("access-token", "issue", str(file_c), "--cost", "5")
    assert _token(file_c)["spec"]["linkCost"] == 5

    by_name = {g["metadata"]["name"]: g for g in _grants(west)}
    assert len(by_name) == 3
    assert by_name[first]["spec"] == {"redemptionsAllowed": 3, "expirationWindow": "24h0m0s"}
    assert by_name[second]["spec"] == {"redemptionsAllowed": 1, "expirationWindow": "1h30m0s"}


def test_dash_writes_exactly_one_yaml_document_to_stdout(west: Any, out: Path) -> None:
    done = west.run("access-token", "issue", "-")
    documents = list(yaml.safe_load_all(done.stdout))
    assert len(documents) == 1
    token = documents[0]
    assert token["kind"] == "AccessToken"
    assert done.stdout.startswith("apiVersion: skupper.io/v2alpha1\n")
    assert "Waiting for status" not in done.stdout
    assert "Grant" not in done.stdout.split("spec:")[0].replace(token["metadata"]["name"], "")
    assert f'Grant "{token["metadata"]["name"]}" is ready.' in done.stderr
    assert "The token expires after 1 use or after 15 minutes." in done.stderr
    # The token works.
    assert _redeem(token["spec"])[0] == 200
    assert list(out.iterdir()) == []


# --- refusals: one line, non-zero, nothing left behind ------------------------------------


def _assert_nothing_left(skupper: Any, folder: Path, grants_before: int = 0) -> None:
    assert len(_grants(skupper)) == grants_before
    assert list(folder.iterdir()) == []


def test_no_site(skupper: Any, out: Path) -> None:
    one_error_line(skupper.fails("access-token", "issue", str(out / "t.yaml")),
             "No site resource exists")
    assert list(out.iterdir()) == []
    assert not skupper.namespace_dir().exists()


def test_link_access_not_enabled(skupper: Any, out: Path) -> None:
    skupper.run("site", "create", "west")
    line = one_error_line(skupper.fails("access-token", "issue", str(out / "t.yaml")),
                    "Link access is not enabled")
    assert "skupper site update --enable-link-access" in line
    _assert_nothing_left(skupper, out)


def test_bad_arguments_and_destinations(west: Any, out: Path) -> None:
    target = str(out / "t.yaml")
    cases: list[tuple[tuple[str, ...], str]] = [
        ((str(out),), "directory"),
        ((str(out / "missing" / "t.yaml"),), "does not exist"),
        ((target, "--expiration-period", "banana"), "--expiration-period"),
        ((target, "--expiration-period", "30s"), "--expiration-period"),
        ((target, "--redemptions-allowed", "0"), "--redemptions-allowed"),
        ((target, "--redemptions-allowed", "-2"), "--redemptions-allowed"),
        ((target, "--redemptions-allowed", "abc"), "--redemptions-allowed"),
        ((target, "--cost", "x"), "--cost"),
    ]
    for args, fragment in cases:
        line = one_error_line(west.fails("access-token", "issue", *args), fragment)
        assert "Traceback" not in line
    _assert_nothing_left(west, out)


def test_timeout_names_the_grant_status_and_removes_the_grant(west: Any, out: Path) -> None:
    # A frozen daemon never makes the grant ready, so even a loaded machine cannot turn
    # the tiny timeout into a success (the grant could be ready at the first look).
    pid = west.daemon_pid()
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        done = west.fails("access-token", "issue", str(out / "t.yaml"), "--timeout", "1ms")
    finally:
        os.kill(pid, signal.SIGCONT)
    line = one_error_line(done, "did not complete")
    assert re.search(rf'Grant "west-{UUID}"', line), line
    assert "status" in line
    _assert_nothing_left(west, out)


def test_expiration_period_out_of_range_is_refused(west: Any, out: Path) -> None:
    # Beyond Go's range it once passed the CLI, crashed the grant reconciler with
    # OverflowError and made the CLI wait out its whole --timeout.
    started = time.monotonic()
    done = west.fails("access-token", "issue", str(out / "t.yaml"),
                      "--expiration-period", "100000000h", "--timeout", "5s")
    one_error_line(done, "--expiration-period")
    assert time.monotonic() - started < 4
    _assert_nothing_left(west, out)


def test_stopped_daemon(west: Any, out: Path) -> None:
    west.run("system", "stop")
    line = one_error_line(west.fails("access-token", "issue", str(out / "t.yaml")), "stopped")
    assert "skupper system start" in line
    _assert_nothing_left(west, out)


# --- the grant afterwards -----------------------------------------------------------------


def test_grant_status_shows_counts_and_never_the_code(west: Any, out: Path) -> None:
    file = out / "t.yaml"
    west.run("access-token", "issue", str(file), "--redemptions-allowed", "2")
    token = _token(file)
    name, code = token["metadata"]["name"], token["spec"]["code"]

    def table_row() -> list[str]:
        lines = west.run("access-grant", "status").stdout.splitlines()
        assert lines[0].split() == ["NAME", "REDEMPTIONS", "EXPIRATION", "STATUS", "MESSAGE"]
        assert len(lines) == 2
        return lines[1].split()

    row = table_row()
    assert row[0] == name
    assert row[1] == "0/2"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", row[2])
    assert row[3:] == ["Ready", "OK"]

    assert _redeem(token["spec"], "x" * 24)[0] == 403
    assert _redeem(token["spec"])[0] == 200
    assert table_row()[1] == "1/2"
    assert _redeem(token["spec"])[0] == 200
    row = table_row()
    assert row[1] == "2/2"
    assert row[3] == "Used"  # honest, and not an error: used up (upstream weakness 7)

    outputs = [west.run("access-grant", "status").stdout]
    for fmt in ("json", "yaml"):
        outputs.append(west.run("access-grant", "status", "-o", fmt).stdout)
        outputs.append(west.run("access-grant", "status", name, "-o", fmt).stdout)
        outputs.append(west.run("site", "status", "-o", fmt).stdout)
    for text in outputs:
        assert code not in text
    single = yaml.safe_load(outputs[-2])
    assert single["kind"] == "AccessGrant"
    assert single["status"]["code"] != code
    log = west.namespace_dir() / "logs" / "daemon.log"
    assert log.is_file()
    assert code not in log.read_text()


def test_grant_delete_then_redeem_is_no_such_claim(west: Any, out: Path) -> None:
    file = out / "t.yaml"
    west.run("access-token", "issue", str(file))
    token = _token(file)
    name = token["metadata"]["name"]
    done = west.run("access-grant", "delete", name)
    assert done.stdout == f'Waiting for deletion to complete...\nGrant "{name}" is deleted.\n'
    assert _grants(west) == []
    assert _redeem(token["spec"]) == (404, "No such claim")
    one_error_line(west.fails("access-grant", "delete", name), name)
