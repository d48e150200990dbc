"""An independent redeemer, written from the wire contract with the standard library only.

It speaks as an upstream Skupper v2 site does: trusts only the token's CA, TLS 1.3 or
newer, POSTs the raw code with headers ``name`` and ``subject``, 10 s timeout. Then it
uses the credential it got on the site's link ports, as a remote router would.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from skupper.certs.issue import generate_ca, issue_certificate

REFUSED = "Redemption of access token refused"
USED_UP = "No such access granted"
NO_CLAIM = "No such claim"


@dataclass(frozen=True)
class Token:
    name: str
    url: str
    code: str
    ca: str

    @classmethod
    def load(cls, path: Path) -> Token:
        doc = yaml.safe_load(path.read_text())
        spec = doc["spec"]
        return cls(doc["metadata"]["name"], spec["url"], spec["code"], spec["ca"])


def post(
    token: Token,
    *,
    code: str | bytes | None = None,
    name: str | None = None,
    subject: str = "east",
    method: str = "POST",
    path: str | None = None,
) -> tuple[int, str]:
    """One redemption request as upstream sends it; (status, body)."""
    url = urlsplit(token.url)
    ctx = ssl.create_default_context(cadata=token.ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    conn = http.client.HTTPSConnection(url.hostname or "", url.port, context=ctx, timeout=10)
    body = token.code.encode() if code is None else code
    try:
        conn.request(method, path or url.path, body=body if method == "POST" else None,
                     headers={"name": name or token.name, "subject": subject})
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def issue(skupper: Any, folder: Path, *args: str) -> Token:
    path = folder / f"token-{uuid.uuid4().hex[:8]}.yaml"
    skupper.run("access-token", "issue", str(path), *args)
    return Token.load(path)


def redemptions(skupper: Any) -> dict[str, int]:
    items = json.loads(skupper.run("access-grant", "status", "-o", "json").stdout)["items"]
    return {g["metadata"]["name"]: g["status"]["redemptions"] for g in items}


def site_ports(skupper: Any) -> dict[str, str]:
    site = json.loads(skupper.run("site", "status", "-o", "json").stdout)
    return {e["name"]: e["port"] for e in site["status"]["endpoints"]}


def _write(folder: Path, name: str, data: bytes) -> str:
    path = folder / name
    path.write_bytes(data)
    path.chmod(0o600)
    return str(path)


def link_client(folder: Path, ca: bytes, cert: bytes | None, key: bytes | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(cadata=ca.decode())
    if cert is not None and key is not None:
        tag = uuid.uuid4().hex[:8]
        ctx.load_cert_chain(_write(folder, f"{tag}.crt", cert), _write(folder, f"{tag}.key", key))
    return ctx


def held_open(ctx: ssl.SSLContext, port: str) -> bool:
    """Handshake, then read: True if the site keeps the link open, False if it drops us.

    With TLS 1.3 the client's handshake completes before the server has checked the
    client certificate; a refusal arrives on the first read (EOF or an alert).
    """
    raw = socket.create_connection(("127.0.0.1", int(port)), timeout=5)
    with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        assert tls.version() == "TLSv1.3"
        tls.settimeout(0.5)
        try:
            data = tls.recv(1)
        except TimeoutError:
            return True
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
            return False
        assert data == b"", f"unexpected bytes from the link port: {data!r}"
        return False


# --- success ------------------------------------------------------------------------------


def test_redemption_answer_certificate_and_link_ports(west: Any, tmp_path: Path) -> None:
    token = issue(west, tmp_path)
    status, body = post(token, name="east-link", subject="east")
    assert status == 200, body
    documents = list(yaml.safe_load_all(body))
    assert len(documents) >= 2

    secret, links = documents[0], documents[1:]
    assert secret["apiVersion"] == "v1"
    assert secret["kind"] == "Secret"
    assert secret["type"] == "kubernetes.io/tls"
    assert secret["metadata"]["name"] == "east-link"
    assert sorted(secret["data"]) == ["ca.crt", "tls.crt", "tls.key"]
    crt, key, ca = (base64.b64decode(secret["data"][k], validate=True)
                    for k in ("tls.crt", "tls.key", "ca.crt"))

    ports = site_ports(west)
    for link in links:
        assert link["apiVersion"] == "skupper.io/v2alpha1"
        assert link["kind"] == "Link"
        assert link["spec"]["tlsCredentials"] == "east-link"
        endpoints = {e["name"]: e for e in link["spec"]["endpoints"]}
        assert sorted(endpoints) == ["edge", "inter-router"]
        for role, endpoint in endpoints.items():
            assert endpoint["host"] == "127.0.0.1"
            assert endpoint["port"] == ports[role]
            assert isinstance(endpoint["port"], str)
    assert [link["metadata"]["name"] for link in links] == (
        ["east-link"] if len(links) == 1 else [f"east-link-{i}" for i in range(1, len(links) + 1)]
    )

    # The credential: ECDSA P-256, CN = subject, client use only, signed by the site CA.
    cert = x509.load_pem_x509_certificate(crt)
    ca_cert = x509.load_pem_x509_certificate(ca)
    public = cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert public.curve.name == "secp256r1"
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == ["east"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    cert.verify_directly_issued_by(ca_cert)
    private = serialization.load_pem_private_key(key, password=None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    assert private.public_key().public_numbers() == public.public_numbers()
    site_ca = west.namespace_dir() / "secrets" / "skupper-site-ca" / "tls.crt"
    assert ca == site_ca.read_bytes()
    assert ca.decode() != token.ca  # the grant server has a CA of its own

    # Use it as a remote router would: the site keeps both links open.
    ctx = link_client(tmp_path, ca, crt, key)
    assert held_open(ctx, ports["inter-router"])
    assert held_open(ctx, ports["edge"])

    # A certificate from any other CA, or none, is dropped.
    stranger_ca = generate_ca("stranger CA")
    stranger = issue_certificate(stranger_ca, "east", usage="client")
    ctx = link_client(tmp_path, ca, stranger.cert_pem, stranger.key_pem)
    assert not held_open(ctx, ports["inter-router"])
    assert not held_open(ctx, ports["edge"])
    assert not held_open(link_client(tmp_path, ca, None, None), ports["inter-router"])

    assert redemptions(west) == {token.name: 1}


# --- refusals -----------------------------------------------------------------------------


def test_refusals_speak_upstream_and_never_count(west: Any, tmp_path: Path) -> None:
    west.env["SKUPPER_TEST_MIN_EXPIRATION"] = "1"
    # Expiry is creationTimestamp (whole seconds) + window: 3 s leaves a loaded machine
    # time to finish issuing before the grant expires.
    short = issue(west, tmp_path, "--expiration-period", "3s")
    short_issued = time.monotonic()
    del west.env["SKUPPER_TEST_MIN_EXPIRATION"]
    token = issue(west, tmp_path)
    counts = {short.name: 0, token.name: 0}
    assert redemptions(west) == counts

    def refused(expected: tuple[int, str], **kwargs: Any) -> None:
        status, body = post(token, **kwargs)
        assert status == expected[0], body
        if expected[1]:
            assert body.strip() == expected[1]

    refused((403, REFUSED), code="A" * 24)
    refused((403, REFUSED), code=token.code[:-1])
    refused((405, "Only POST is supported"), method="GET")
    refused((404, NO_CLAIM), path=f"/{uuid.uuid4()}")
    refused((404, NO_CLAIM), path="/")
    refused((400, ""), subject="../etc")
    refused((400, ""), subject="a" * 100)
    refused((400, ""), subject="")
    refused((400, ""), name="../etc")
    refused((400, ""), code=b"")
    refused((413, ""), code=token.code.encode() + b" " * 5000)
    assert redemptions(west) == counts

    status, body = post(token)
    assert status == 200, body
    counts[token.name] = 1
    refused((404, USED_UP))
    refused((403, REFUSED), code="B" * 24)  # the code is still checked first
    assert redemptions(west) == counts

    time.sleep(max(0.0, short_issued + 4.0 - time.monotonic()))
    status, body = post(short)  # upstream's words, then why: the holder showed the code
    assert status == 404 and body.startswith(NO_CLAIM + ": the grant expired at ")
    status, body = post(short, code="C" * 24)
    assert (status, body.strip()) == (403, REFUSED)  # expiry is not revealed without the code
    assert redemptions(west) == counts
    # Honest status (upstream weakness 7): the expired grant no longer says Ready.
    items = json.loads(west.run("access-grant", "status", "-o", "json").stdout)["items"]
    expired = next(g for g in items if g["metadata"]["name"] == short.name)
    assert expired["status"]["status"] == "Expired"  # an expected end, not an error
    assert "expired" in expired["status"]["message"]


def test_overlong_uuid_like_subject_is_a_400(west: Any, tmp_path: Path) -> None:
    # uuid.UUID() accepts extra dashes; such a subject once reached the CA (CN > 64)
    # and the right code got 503 "Internal error".
    token = issue(west, tmp_path)
    subject = "-".join("0123456789abcdef0123456789abcdef") + "-" * 40
    assert len(subject) > 64
    status, body = post(token, subject=subject)
    assert status == 400, (status, body)
    assert redemptions(west) == {token.name: 0}


def test_token_of_a_site_with_a_long_name_is_redeemable(skupper: Any, tmp_path: Path) -> None:
    # Grants are named "<site>-<uuid4>"; a 63-character limit on the name header once
    # refused every token of a site whose name has 27 characters or more.
    site_name = "west-with-a-rather-long-site-name-ok"  # 36 characters
    skupper.run("site", "create", site_name, "--enable-link-access")
    token = issue(skupper, tmp_path)
    assert token.name.startswith(site_name + "-")
    status, body = post(token)  # name header = the token's name, as upstream sends it
    assert status == 200, (status, body)


# --- concurrency --------------------------------------------------------------------------


def test_concurrent_redeemers_get_exactly_the_allowed_uses(west: Any, tmp_path: Path) -> None:
    token = issue(west, tmp_path, "--redemptions-allowed", "5")
    clients = 20
    barrier = threading.Barrier(clients)
    results: list[tuple[int, str]] = []
    lock = threading.Lock()

    def redeem(index: int) -> None:
        barrier.wait(timeout=30)
        try:
            outcome = post(token, subject=f"east-{index}")
        except Exception as exc:  # recorded, so the assertion shows it
            outcome = (-1, repr(exc))
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=redeem, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == clients
    statuses = sorted(status for status, _ in results)
    assert all(0 < s < 500 for s in statuses), results
    assert statuses == [200] * 5 + [404] * 15, statuses
    assert sorted(body.strip() for s, body in results if s == 404) == [USED_UP] * 15
    assert redemptions(west) == {token.name: 5}
