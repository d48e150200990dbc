"""The site's own credentials: a reserved name space, broken CAs reported (never replaced),
derived server certificates reissued, and no Link ever dialing with one of them."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from skupper.certs.issue import generate_ca, issue_certificate, verify_signed_by
from skupper.controller import credentials
from skupper.controller.credentials import (
    SITE_CA,
    SITE_CREDENTIALS,
    SITE_SERVER,
    BrokenCredential,
    ensure_ca,
    ensure_server_certificate,
)
from skupper.controller.link import LinkReconciler
from skupper.resources import new_resource
from skupper.resources.site import is_site_credential
from skupper.store.secrets import FileSecretStore
from skupper.store.sqlite import SqliteStore


def test_every_site_credential_is_in_the_reserved_name_space() -> None:
    names = {value for key, value in vars(credentials).items()
             if key.isupper() and isinstance(value, str) and key != "_HOSTS_KEY"}
    assert names == set(SITE_CREDENTIALS)
    assert all(is_site_credential(name) for name in names)
    assert not is_site_credential("west-0b8e6a2c-5a3f-4d3e-9c3b-2f6a3c1d9e7f")


def test_site_credentials_are_only_kept_under_reserved_names(tmp_path: Path) -> None:
    secrets = FileSecretStore(tmp_path)
    with pytest.raises(ValueError, match="not a reserved"):
        asyncio.run(ensure_ca(secrets, "my-ca", "x"))
    ca = asyncio.run(ensure_ca(secrets, SITE_CA, "x"))
    with pytest.raises(ValueError, match="not a reserved"):
        asyncio.run(ensure_server_certificate(secrets, "my-server", ca, ["h"]))


OTHER = generate_ca("other")
LEAF = issue_certificate(OTHER, "h", usage="server", hosts=["h"])


@pytest.mark.parametrize(("data", "fragment"), [
    ({"tls.crt": LEAF.cert_pem, "tls.key": LEAF.key_pem}, "not a CA certificate"),
    ({"tls.crt": OTHER.cert_pem, "tls.key": LEAF.key_pem}, "does not match"),
    ({"tls.crt": b"junk", "tls.key": OTHER.key_pem}, "does not parse"),
    ({"tls.crt": OTHER.cert_pem}, "lacks tls.crt or tls.key"),
])
def test_a_broken_ca_is_reported_and_kept(tmp_path: Path, data: dict[str, bytes],
                                          fragment: str) -> None:
    secrets = FileSecretStore(tmp_path)
    asyncio.run(secrets.put(SITE_CA, data))
    with pytest.raises(BrokenCredential) as excinfo:
        asyncio.run(ensure_ca(secrets, SITE_CA, "x"))
    assert excinfo.value.name == SITE_CA and fragment in excinfo.value.why
    assert asyncio.run(secrets.get(SITE_CA)) == data


def test_a_broken_server_certificate_is_reissued_from_the_ca(tmp_path: Path) -> None:
    secrets = FileSecretStore(tmp_path)
    ca = asyncio.run(ensure_ca(secrets, SITE_CA, "x"))
    first = asyncio.run(ensure_server_certificate(secrets, SITE_SERVER, ca, ["h"]))
    assert asyncio.run(ensure_server_certificate(secrets, SITE_SERVER, ca, ["h"])) == first
    stored = asyncio.run(secrets.get(SITE_SERVER))
    asyncio.run(secrets.put(SITE_SERVER, {**stored, "tls.key": OTHER.key_pem}))
    again = asyncio.run(ensure_server_certificate(secrets, SITE_SERVER, ca, ["h"]))
    assert again != first and verify_signed_by(again.cert_pem, ca.cert_pem)


class Runtime:
    def __init__(self) -> None:
        self.dialed: list[str] = []

    async def ensure_link(self, link: Any, credentials: dict[str, bytes]) -> None:
        self.dialed.append(link["metadata"]["name"])

    async def remove_link(self, name: str) -> None:
        pass


@pytest.mark.parametrize("spec", [{"tlsCredentials": SITE_CA}, {"tlsCredentials": "skupper-x"},
                                  {}])
def test_a_link_never_dials_with_a_site_credential(tmp_path: Path, spec: dict[str, str]) -> None:
    async def main() -> tuple[list[str], dict[str, Any]]:
        with SqliteStore(tmp_path / "ns.db") as store:
            secrets = FileSecretStore(tmp_path / "secrets")
            ca = await ensure_ca(secrets, SITE_CA, "x")
            await secrets.put("skupper-x", {"tls.crt": ca.cert_pem, "tls.key": ca.key_pem,
                                            "ca.crt": ca.cert_pem})
            endpoints = [{"name": "inter-router", "host": "127.0.0.1", "port": "1"}]
            # Without tlsCredentials a Link uses the Secret of its own name.
            name = "skupper-site-ca" if not spec else "plain"
            await store.create(new_resource("Link", name, {"endpoints": endpoints, **spec}))
            runtime = Runtime()
            await LinkReconciler(store, secrets, runtime).reconcile(name)
            return runtime.dialed, await store.get("Link", name)

    dialed, link = asyncio.run(main())
    assert dialed == []
    assert link["status"]["status"] == "Error"
    assert "name the site credential" in link["status"]["message"]
