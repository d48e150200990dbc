"""`skupper debug dump`: what a bug report needs, and none of the site's secrets."""

from __future__ import annotations

import base64
import tarfile
from pathlib import Path

import pytest
import yaml

from tests_support import Skupper, one_error_line

pytestmark = pytest.mark.e2e


def _secrets_of(skupper: Skupper, ns: str) -> list[bytes]:
    """Every private key this site holds, from its files."""
    root = skupper.namespace_dir(ns) / "secrets"
    return [key.read_bytes() for key in root.glob("*/tls.key")]


def _dump(skupper: Skupper, ns: str, file: Path) -> dict[str, bytes]:
    done = skupper.run("debug", "dump", str(file), "-n", ns)
    assert f"Debug dump written to {file}" in done.stdout
    assert file.stat().st_mode & 0o777 == 0o600
    with tarfile.open(file) as archive:
        return {member.name.split("/", 1)[1]: archive.extractfile(member).read()  # type: ignore[union-attr]
                for member in archive.getmembers() if member.isfile()}


def test_a_dump_holds_versions_resources_events_and_logs_but_no_key_or_code(
    skupper: Skupper, tmp_path: Path,
) -> None:
    skupper.run("site", "create", "west", "--enable-link-access", "-n", "west")
    skupper.run("site", "create", "east", "-n", "east")
    token = tmp_path / "token.yaml"
    used = tmp_path / "used.yaml"
    skupper.run("access-token", "issue", str(used), "-n", "west")
    skupper.run("access-token", "issue", str(token), "-n", "west")  # left unredeemed
    skupper.run("access-token", "redeem", str(used), "-n", "east")
    codes = [yaml.safe_load(f.read_text())["spec"]["code"].encode() for f in (token, used)]

    for ns in ("west", "east"):
        files = _dump(skupper, ns, tmp_path / f"{ns}.tar.gz")
        keys = _secrets_of(skupper, ns)
        assert keys, "the site holds keys to look for"
        assert {"versions.yaml", "events.txt", "resources/Site.yaml", "logs/daemon.log"} <= set(
            files)
        versions = yaml.safe_load(files["versions.yaml"])
        assert versions["namespace"] == ns and versions["platform"] == "systemd"
        assert b"Ready" in files["events.txt"]
        everything = b"".join(files.values())
        for secret in [*keys, *codes]:
            for form in (secret, base64.b64encode(secret), secret.strip()):
                assert form not in everything
        assert b"PRIVATE KEY-----" not in everything
        assert any(name.startswith("certificates/") for name in files)
    west = _dump(skupper, "west", tmp_path / "again.tar.gz")
    grants = yaml.safe_load(west["resources/AccessGrant.yaml"])["items"]
    assert len(grants) == 2 and all(g["status"]["code"] == "<redacted>" for g in grants)


def test_a_dump_without_a_site_says_so(skupper: Skupper, tmp_path: Path) -> None:
    done = skupper.fails("debug", "dump", str(tmp_path / "d.tar.gz"), "-n", "nowhere")
    one_error_line(done, "No site")
    assert not (tmp_path / "d.tar.gz").exists()
