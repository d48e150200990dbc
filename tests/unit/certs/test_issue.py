"""Issuing: key type, CA constraints, usages, SANs, serials, validity, redaction."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from skupper.certs.issue import (
    KeyPair,
    certificate_common_name,
    certificate_serial,
    generate_ca,
    is_ca_certificate,
    issue_certificate,
    verify_signed_by,
)

T = TypeVar("T", bound=x509.ExtensionType)


@pytest.fixture(scope="module")
def ca() -> KeyPair:
    return generate_ca("test-ca")


def _cert(pair: KeyPair) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pair.cert_pem)


def _ext(cert: x509.Certificate, kind: type[T]) -> x509.Extension[T]:
    return cert.extensions.get_extension_for_class(kind)


def test_keys_are_p256_pkcs8(ca: KeyPair) -> None:
    leaf = issue_certificate(ca, "srv", usage="server")
    for pair in (ca, leaf):
        assert pair.key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS8, unencrypted
        key = serialization.load_pem_private_key(pair.key_pem, password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        assert isinstance(key.curve, ec.SECP256R1)
        public = _cert(pair).public_key()
        assert isinstance(public, ec.EllipticCurvePublicKey)
        assert isinstance(public.curve, ec.SECP256R1)
        assert isinstance(_cert(pair).signature_hash_algorithm, hashes.SHA256)


def test_ca_constraints(ca: KeyPair) -> None:
    cert = _cert(ca)
    assert cert.subject == cert.issuer
    assert certificate_common_name(ca.cert_pem) == "test-ca"
    constraints = _ext(cert, x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca is True
    assert constraints.value.path_length == 0
    usage = _ext(cert, x509.KeyUsage)
    assert usage.critical
    assert usage.value.key_cert_sign and usage.value.crl_sign
    assert not usage.value.digital_signature
    _ext(cert, x509.SubjectKeyIdentifier)
    assert cert.not_valid_before_utc.tzinfo is not None
    now = datetime.now(UTC)
    assert now - timedelta(minutes=6) < cert.not_valid_before_utc < now - timedelta(minutes=4)
    assert cert.not_valid_after_utc > now + timedelta(days=5 * 365 - 1)
    assert is_ca_certificate(ca.cert_pem)
    assert verify_signed_by(ca.cert_pem, ca.cert_pem)  # self-signed


def test_leaf_constraints_and_identifiers(ca: KeyPair) -> None:
    leaf = issue_certificate(ca, "srv", usage="server")
    cert, ca_cert = _cert(leaf), _cert(ca)
    assert cert.subject == x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "srv")])
    assert cert.issuer == ca_cert.subject
    constraints = _ext(cert, x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca is False
    usage = _ext(cert, x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature
    assert not usage.value.key_cert_sign
    aki = _ext(cert, x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == _ext(ca_cert, x509.SubjectKeyIdentifier).value.digest
    _ext(cert, x509.SubjectKeyIdentifier)
    assert not is_ca_certificate(leaf.cert_pem)
    assert verify_signed_by(leaf.cert_pem, ca.cert_pem)
    assert certificate_common_name(leaf.cert_pem) == "srv"


def test_server_cert_is_server_auth_only(ca: KeyPair) -> None:
    eku = _ext(_cert(issue_certificate(ca, "srv", usage="server")), x509.ExtendedKeyUsage)
    assert list(eku.value) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_client_cert_is_client_auth_only(ca: KeyPair) -> None:
    eku = _ext(_cert(issue_certificate(ca, "cli", usage="client")), x509.ExtendedKeyUsage)
    assert list(eku.value) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_unknown_usage_is_rejected(ca: KeyPair) -> None:
    with pytest.raises(ValueError, match="usage"):
        issue_certificate(ca, "x", usage="both")  # type: ignore[arg-type]


def test_ip_and_dns_sans(ca: KeyPair) -> None:
    leaf = issue_certificate(
        ca, "srv", usage="server", hosts=["127.0.0.1", "::1", "example.com", "[fe80::1]"]
    )
    san = _ext(_cert(leaf), x509.SubjectAlternativeName)
    assert not san.critical
    assert san.value.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
        ipaddress.ip_address("fe80::1"),
    ]
    assert san.value.get_values_for_type(x509.DNSName) == ["example.com"]


def test_server_without_hosts_uses_common_name(ca: KeyPair) -> None:
    san = _ext(
        _cert(issue_certificate(ca, "site-a.example", usage="server")), x509.SubjectAlternativeName
    )
    assert san.value.get_values_for_type(x509.DNSName) == ["site-a.example"]
    assert san.value.get_values_for_type(x509.IPAddress) == []


def test_client_without_hosts_has_no_san(ca: KeyPair) -> None:
    with pytest.raises(x509.ExtensionNotFound):
        _ext(_cert(issue_certificate(ca, "cli", usage="client")), x509.SubjectAlternativeName)


def test_hosts_must_not_be_a_bare_string(ca: KeyPair) -> None:
    with pytest.raises(TypeError):
        issue_certificate(ca, "srv", usage="server", hosts="example.com")


def test_serial_differs_per_certificate(ca: KeyPair) -> None:
    serials = {issue_certificate(ca, "same", usage="client").serial for _ in range(20)}
    assert len(serials) == 20
    assert ca.serial not in serials
    for serial in serials:
        assert 0 < serial < 2**159
    leaf = issue_certificate(ca, "x", usage="client")
    assert leaf.serial == certificate_serial(leaf.cert_pem) == _cert(leaf).serial_number


def test_validity_is_capped_by_ca() -> None:
    short_ca = generate_ca("short", validity=timedelta(days=10))
    leaf = issue_certificate(short_ca, "srv", usage="server", validity=timedelta(days=365))
    cert, ca_cert = _cert(leaf), _cert(short_ca)
    assert cert.not_valid_after_utc == ca_cert.not_valid_after_utc
    assert cert.not_valid_before_utc >= ca_cert.not_valid_before_utc


def test_validity_within_ca_is_kept(ca: KeyPair) -> None:
    before = datetime.now(UTC)
    cert = _cert(issue_certificate(ca, "srv", usage="server", validity=timedelta(days=30)))
    # x509 times have one-second resolution.
    assert before + timedelta(days=30, seconds=-1) <= cert.not_valid_after_utc
    assert cert.not_valid_after_utc <= datetime.now(UTC) + timedelta(days=30)


def test_non_positive_validity_is_rejected(ca: KeyPair) -> None:
    with pytest.raises(ValueError, match="validity"):
        generate_ca("x", validity=timedelta(0))
    with pytest.raises(ValueError, match="validity"):
        issue_certificate(ca, "x", usage="client", validity=timedelta(days=-1))


def test_expired_ca_is_rejected() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "old")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=10))
        .not_valid_after(now - timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    old = KeyPair(
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    with pytest.raises(ValueError, match="expired"):
        issue_certificate(old, "x", usage="client")


def test_leaf_cannot_issue(ca: KeyPair) -> None:
    leaf = issue_certificate(ca, "srv", usage="server")
    with pytest.raises(ValueError, match="not a CA"):
        issue_certificate(leaf, "x", usage="client")


def test_mismatched_ca_key_is_rejected(ca: KeyPair) -> None:
    other = generate_ca("other")
    with pytest.raises(ValueError, match="does not match"):
        issue_certificate(KeyPair(ca.cert_pem, other.key_pem), "x", usage="client")


def test_keypair_repr_hides_key(ca: KeyPair) -> None:
    leaf = issue_certificate(ca, "srv", usage="server")
    for text in (repr(leaf), str(leaf), repr([leaf])):
        assert "PRIVATE" not in text
        assert leaf.key_pem.decode() not in text
        assert "<redacted>" in text
        assert f"{leaf.serial:#x}" in text
    bad = KeyPair(cert_pem=b"garbage", key_pem=b"-----BEGIN PRIVATE KEY-----secret")
    assert "secret" not in repr(bad)


def test_verify_signed_by_other_ca_and_garbage(ca: KeyPair) -> None:
    other = generate_ca("other")
    leaf = issue_certificate(ca, "srv", usage="server")
    assert not verify_signed_by(leaf.cert_pem, other.cert_pem)
    assert not verify_signed_by(b"garbage", ca.cert_pem)
    assert not verify_signed_by(leaf.cert_pem, b"garbage")


def test_is_ca_certificate_invalid_pem() -> None:
    assert not is_ca_certificate(b"")
    assert not is_ca_certificate(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")


def test_parsers_reject_garbage() -> None:
    with pytest.raises(ValueError):
        certificate_serial(b"garbage")
    with pytest.raises(ValueError):
        certificate_common_name(b"garbage")


def test_importing_certs_and_tls_does_not_import_cryptography() -> None:
    code = "import sys, skupper.certs, skupper.certs.tls; sys.exit('cryptography' in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)
