"""Generated links on a real SQLite store and secret folder: one certificate each, in the
shape a redemption answer has, recorded in the Site status, revoked one by one; and the
link manager binding each generated certificate to the first site that uses it."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from test_crd_schemas import check
from test_link_manager_identity import EAST_ID, OTHER_ID, Connection, hello, manager

from skupper.base.errors import SkupperError, UsageError
from skupper.certs.issue import verify_signed_by
from skupper.certs.tls import GENERATED_LINK_UNIT, PeerCertificate
from skupper.controller.credentials import SITE_CA, ensure_ca
from skupper.controller.generated_links import (
    MAX_GENERATED_LINKS,
    check_name,
    default_name,
    forget,
    generate,
    revoke,
)
from skupper.grants.client import parse_answer
from skupper.resources import new_resource
from skupper.resources.generated_links import generated_links
from skupper.store.secrets import FileSecretStore
from skupper.store.sqlite import SqliteStore

ENDPOINTS = [{"name": "inter-router", "host": "127.0.0.1", "port": "55671",
              "group": "skupper-router"},
             {"name": "edge", "host": "127.0.0.1", "port": "45671", "group": "skupper-router"}]


class Site:
    """A site "west" with link access: its store, its secrets (with a real site CA)."""

    def __init__(self, root: Path) -> None:
        self.store = SqliteStore(root / "store.db")
        self.secrets = FileSecretStore(root / "secrets")

    def run(self, coro: Any) -> Any:
        return asyncio.run(coro)

    async def setup(self, link_access: bool = True) -> None:
        await ensure_ca(self.secrets, SITE_CA, "west site CA")
        spec = {"linkAccess": "default"} if link_access else {}
        site = await self.store.create(new_resource("Site", "west", spec))
        site["status"] = {"endpoints": ENDPOINTS if link_access else []}
        await self.store.update_status(site)

    async def site(self) -> dict[str, Any]:
        return await self.store.get("Site", "west")

    def generate(self, name: str, cost: int = 1, validity: float | None = None) -> Any:
        async def go() -> Any:
            return await generate(self.store, self.secrets, await self.site(), name, cost,
                                  validity)
        return self.run(go())

    def entries(self) -> list[dict[str, Any]]:
        return generated_links(self.run(self.site()))

    def status(self) -> dict[str, Any]:
        return dict(self.run(self.site()).get("status") or {})


@pytest.fixture
def west(tmp_path: Path) -> Iterator[Site]:
    site = Site(tmp_path)
    site.run(site.setup())
    try:
        yield site
    finally:
        site.store.close()


def certificate(documents: list[dict[str, Any]]) -> x509.Certificate:
    return x509.load_pem_x509_certificate(base64.b64decode(documents[0]["data"]["tls.crt"]))


def test_a_generated_link_is_a_secret_and_a_link_shaped_like_a_redemption_answer(
    west: Site,
) -> None:
    generated = west.generate("east", cost=7)
    secret, link = generated.documents
    assert secret["apiVersion"] == "v1" and secret["kind"] == "Secret"
    assert secret["type"] == "kubernetes.io/tls"
    assert secret["metadata"] == {"name": "east"}
    assert set(secret["data"]) == {"ca.crt", "tls.crt", "tls.key"}
    assert link == {"apiVersion": "skupper.io/v2alpha1", "kind": "Link",
                    "metadata": {"name": "east"},
                    "spec": {"endpoints": ENDPOINTS, "cost": 7, "tlsCredentials": "east"}}
    check(link)  # fits the Link CRD: what kubectl apply would send
    # The receiving site's checks of a redemption answer take it as it is.
    answer = parse_answer("a generated link", yaml.safe_dump_all(generated.documents).encode(),
                          "east")
    assert answer.secret_name == "east"
    assert answer.links == [("east", {"endpoints": ENDPOINTS})]

    ca = west.run(west.secrets.get(SITE_CA))["tls.crt"]
    assert base64.b64decode(secret["data"]["ca.crt"]) == ca
    cert = certificate(generated.documents)
    assert verify_signed_by(cert.public_bytes(Encoding.PEM), ca)
    subject = {a.oid: a.value for a in cert.subject}
    assert subject == {NameOID.COMMON_NAME: "east",
                       NameOID.ORGANIZATIONAL_UNIT_NAME: GENERATED_LINK_UNIT}
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert generated.serial == format(cert.serial_number, "x")


def test_each_generated_link_has_its_own_certificate_and_entry(west: Site) -> None:
    one, two = west.generate("east"), west.generate("south")
    assert certificate(one.documents).serial_number != certificate(two.documents).serial_number
    assert [(e["name"], e["serial"]) for e in west.entries()] == [
        ("east", one.serial), ("south", two.serial)]
    check(west.run(west.site()))  # generatedLinks is a declared status field


def test_the_validity_is_the_site_setting_unless_expires_says_otherwise(west: Site) -> None:
    now = datetime.now(UTC)
    default = certificate(west.generate("a").documents).not_valid_after_utc
    assert abs(default - (now + timedelta(hours=43800))) < timedelta(minutes=1)
    two_hours = west.generate("b", validity=7200)
    after = certificate(two_hours.documents).not_valid_after_utc
    assert abs(after - (now + timedelta(hours=2))) < timedelta(minutes=1)
    assert two_hours.expires == after.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert west.entries()[1]["expires"] == two_hours.expires


def test_a_name_is_generated_once_until_it_is_revoked(west: Site) -> None:
    first = west.generate("east")
    with pytest.raises(SkupperError, match='A generated link named "east" already exists'):
        west.generate("east")
    assert len(west.entries()) == 1
    done = west.run(revoke(west.store, "west", "east"))
    assert not done.already and done.entry["serial"] == first.serial
    again = west.generate("east")  # the name is free again; the old serial stays refused
    assert [e.get("revoked") is not None for e in west.entries()] == [True, False]
    revoked = west.status()["revokedCertificates"]
    assert [(e["serial"], e["link"]) for e in revoked] == [(first.serial, "east")]
    assert again.serial not in {e["serial"] for e in revoked}


def test_revoke_lists_one_serial_and_says_when_it_was_done_before(west: Site) -> None:
    east, south = west.generate("east"), west.generate("south")
    first = west.run(revoke(west.store, "west", "east"))
    second = west.run(revoke(west.store, "west", "east"))
    assert second.already and second.entry["revoked"] == first.entry["revoked"]
    assert [e["serial"] for e in west.status()["revokedCertificates"]] == [east.serial]
    assert [e["name"] for e in west.entries() if not e.get("revoked")] == ["south"]
    assert south.serial not in {e["serial"] for e in west.status()["revokedCertificates"]}
    with pytest.raises(SkupperError, match='No generated link "north"'):
        west.run(revoke(west.store, "west", "north"))


def test_forget_drops_only_a_certificate_never_handed_out(west: Site) -> None:
    unused, bound = west.generate("a"), west.generate("b")

    def bind(site: dict[str, Any]) -> None:
        site["status"]["generatedLinks"][1]["remoteSiteId"] = EAST_ID

    west.run(west.store.mutate_status("Site", "west", bind))
    west.run(forget(west.store, "west", unused.serial))
    west.run(forget(west.store, "west", bound.serial))
    assert [e["name"] for e in west.entries()] == ["b"]


def test_no_link_access_no_endpoints_or_too_many_is_one_line(tmp_path: Path) -> None:
    site = Site(tmp_path)
    try:
        site.run(site.setup(link_access=False))
        with pytest.raises(SkupperError, match="link access is not enabled") as caught:
            site.generate("east")
        assert "skupper site update --enable-link-access" in caught.value.line()
        assert site.entries() == []

        def full(resource: dict[str, Any]) -> None:
            resource["spec"] = {"linkAccess": "default"}

        async def enable() -> None:
            current = await site.site()
            full(current)
            await site.store.update(current)

        site.run(enable())
        with pytest.raises(SkupperError, match="has no link endpoints yet"):
            site.generate("east")

        def crowd(resource: dict[str, Any]) -> None:
            resource["status"]["endpoints"] = ENDPOINTS
            resource["status"]["generatedLinks"] = [
                {"name": f"l{i}", "serial": format(i + 1, "x"), "revoked": "x"}
                for i in range(MAX_GENERATED_LINKS)]

        site.run(site.store.mutate_status("Site", "west", crowd))
        with pytest.raises(SkupperError, match="the most it keeps"):
            site.generate("east")
        assert len(site.entries()) == MAX_GENERATED_LINKS
    finally:
        site.store.close()


@pytest.mark.parametrize("name", ["East", "a.b", "x" * 64, "skupper-site-ca", "-a", ""])
def test_names_that_cannot_be_a_link_a_secret_and_a_cn_are_refused(name: str) -> None:
    with pytest.raises(UsageError):
        check_name(name)


def test_the_default_name_is_upstreams() -> None:
    assert default_name("west") == "link-west"


# --- the link manager: a generated certificate speaks for the first site that uses it --------


def _generated_site(serial: int, **bound: str) -> dict[str, Any]:
    entry = {"name": "east-link", "serial": format(serial, "x"), **bound}
    return {"metadata": {"uid": "11111111-1111-4111-8111-111111111111", "name": "west"},
            "status": {"generatedLinks": [entry]}}


def test_a_generated_certificate_is_bound_to_the_first_site_durably() -> None:
    links, writer = manager()
    links.set_generated_links(_generated_site(0x5E))
    cert = PeerCertificate(0x5E, "east-link", GENERATED_LINK_UNIT)
    east = Connection(hello(EAST_ID, "east", "east-link"), unit=GENERATED_LINK_UNIT)
    assert links.admit(east.remote_hello, cert) is None
    links.on_incoming(east, 0x5E)  # type: ignore[arg-type]
    # The binding rides on the Site status write (writer: the one the daemon uses).
    site = writer.resources[("Site", "west")]
    site["status"]["generatedLinks"] = [{"name": "east-link", "serial": "5e"}]
    links.refresh_network()
    assert site["status"]["generatedLinks"] == [
        {"name": "east-link", "serial": "5e", "remoteSiteId": EAST_ID, "remoteSiteName": "east"}]
    assert site["status"]["incomingLinks"][0]["certificate"] == "5e"

    # A restarted daemon reads the binding back: another site with the same file is refused.
    later, _ = manager()
    later.set_generated_links({**_generated_site(0x5E), "status": site["status"]})
    why = later.admit(hello(OTHER_ID, "mallory", "east-link"), cert)
    assert why == "the certificate of generated link east-link belongs to site east"
    assert later.admit(hello(EAST_ID, "east", "east-link"), cert) is None


def test_a_binding_not_yet_written_survives_a_reload_of_the_site() -> None:
    links, _ = manager()
    links.set_generated_links(_generated_site(0x7))
    links.on_incoming(Connection(hello(EAST_ID, "east", "l"), unit=GENERATED_LINK_UNIT),
                      0x7)  # type: ignore[arg-type]
    links.set_generated_links(_generated_site(0x7))  # a Site reconcile before the write
    cert = PeerCertificate(0x7, "l", GENERATED_LINK_UNIT)
    assert "belongs to site east" in str(links.admit(hello(OTHER_ID, "south", "l"), cert))


class _Revocable(Connection):
    def __init__(self, hello: dict[str, str], unit: str | None = None) -> None:
        super().__init__(hello, unit)
        self.revoked = False

    def revoke(self) -> None:
        self.revoked = True


def test_a_hello_judged_before_the_revocation_lists_arrived_is_cut_when_it_lands() -> None:
    """A dialer quick after a start passes the hello before the lists are read: the
    connection is judged again when it is registered, and never counts as up."""
    links, writer = manager()
    links.set_revoked({"status": {"revokedCertificates": [{"serial": "5e", "link": "l"}]}})
    early = _Revocable(hello(EAST_ID, "east", "l"), unit=GENERATED_LINK_UNIT)
    links.on_incoming(early, 0x5E)  # type: ignore[arg-type]
    assert early.revoked
    assert writer.resources.get(("Site", "west"), {}).get("status", {}).get(
        "incomingLinks", []) == []
    other = _Revocable(hello(OTHER_ID, "south", "m"), unit=GENERATED_LINK_UNIT)
    links.on_incoming(other, 0x6F)  # type: ignore[arg-type]
    assert not other.revoked
