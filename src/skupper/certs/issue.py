"""Certificate authorities and certificates: ECDSA P-256, PEM in and PEM out.

A CA is self-signed and may only sign leaf certificates (path length 0). A leaf is
either a ``server`` certificate (serverAuth only) or a ``client`` certificate
(clientAuth only), so a certificate issued for one role can never be used for the
other. Every datetime is UTC-aware; ``not_valid_before`` is backdated five minutes
to tolerate clock skew between sites, and a leaf never outlives its CA.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CLOCK_SKEW = timedelta(minutes=5)
DEFAULT_CA_VALIDITY = timedelta(days=5 * 365)
DEFAULT_CERT_VALIDITY = timedelta(days=365)

Usage = Literal["server", "client"]


@dataclass(frozen=True, repr=False)
class KeyPair:
    """A PEM certificate and its PEM (PKCS8, unencrypted) private key."""

    cert_pem: bytes
    key_pem: bytes = field(repr=False)

    @property
    def serial(self) -> int:
        """The certificate's serial number (parsed on each access)."""
        return certificate_serial(self.cert_pem)

    def __repr__(self) -> str:
        # Never show the key; never raise, even for a malformed certificate.
        try:
            cert = _load_cert(self.cert_pem)
            return (
                f"KeyPair(cn={_common_name(cert)!r}, serial={cert.serial_number:#x}, "
                "key_pem=<redacted>)"
            )
        except ValueError:
            return "KeyPair(cert_pem=<unparseable>, key_pem=<redacted>)"


def generate_ca(common_name: str, *, validity: timedelta = DEFAULT_CA_VALIDITY) -> KeyPair:
    """Create a self-signed CA that may sign leaf certificates only (path length 0)."""
    _check_validity(validity)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert_pem=cert.public_bytes(serialization.Encoding.PEM), key_pem=_key_pem(key))


def issue_certificate(
    ca: KeyPair,
    common_name: str,
    *,
    usage: Usage,
    hosts: Sequence[str] = (),
    validity: timedelta = DEFAULT_CERT_VALIDITY,
    organizational_unit: str | None = None,
) -> KeyPair:
    """Issue a ``server`` or ``client`` leaf certificate signed by ``ca``.

    ``hosts`` become subjectAltNames: IPv4/IPv6 literals as IP addresses, everything
    else as DNS names. A server certificate without hosts gets its common name as
    its only SAN. The validity is cut short so it never outlives the CA.
    """
    if usage not in ("server", "client"):
        raise ValueError(f"usage must be 'server' or 'client', not {usage!r}")
    if isinstance(hosts, str):
        # A bare string is a Sequence[str] of characters: almost certainly a bug.
        raise TypeError("hosts must be a sequence of host names, not a string")
    _check_validity(validity)
    ca_cert, ca_key = _load_issuer(ca)

    now = datetime.now(UTC)
    not_before = max(now - CLOCK_SKEW, ca_cert.not_valid_before_utc)
    not_after = min(now + validity, ca_cert.not_valid_after_utc)
    if not_after <= now:
        raise ValueError(f"the CA expired at {ca_cert.not_valid_after_utc.isoformat()}")

    key = ec.generate_private_key(ec.SECP256R1())
    subject = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organizational_unit:
        # Link certificates name their grant here, so revoking a grant needs no serials.
        subject.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, organizational_unit))
    eku = ExtendedKeyUsageOID.SERVER_AUTH if usage == "server" else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(subject))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
        .add_extension(_authority_key_identifier(ca_cert), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    names = list(hosts) if hosts else ([common_name] if usage == "server" else [])
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(_sans(names)), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return KeyPair(cert_pem=cert.public_bytes(serialization.Encoding.PEM), key_pem=_key_pem(key))


@functools.lru_cache(maxsize=16)
def _load_issuer(ca: KeyPair) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """Parse and check a CA once: a grant server signs with the same CA many times."""
    ca_cert = _load_cert(ca.cert_pem)
    ca_key = _load_ec_key(ca.key_pem)
    if not _is_ca(ca_cert):
        raise ValueError("the issuing certificate is not a CA")
    if _public_der(ca_key.public_key()) != _public_der(_ec_public_key(ca_cert.public_key())):
        raise ValueError("the CA key does not match the CA certificate")
    return ca_cert, ca_key


def certificate_serial(cert_pem: bytes) -> int:
    """The serial number of a PEM certificate; ValueError if it does not parse."""
    return _load_cert(cert_pem).serial_number


def certificate_not_after(cert_pem: bytes) -> datetime:
    """When a PEM certificate stops being valid (UTC); ValueError if it does not parse."""
    return _load_cert(cert_pem).not_valid_after_utc


def certificate_common_name(cert_pem: bytes) -> str:
    """The subject common name of a PEM certificate; ValueError if absent or unparseable."""
    return _common_name(_load_cert(cert_pem))


def is_ca_certificate(pem: bytes) -> bool:
    """True if ``pem`` is a certificate with BasicConstraints ca=True; False otherwise."""
    try:
        return _is_ca(_load_cert(pem))
    except ValueError:
        return False


def key_pair_problem(pair: KeyPair, *, ca: bool, signed_by: bytes | None = None) -> str | None:
    """What makes ``pair`` unusable, in a few words; None when it is usable.

    Checks that the certificate and key parse, that the key is the certificate's, that
    the certificate is valid now, is (or is not) a CA as ``ca`` says and, with
    ``signed_by``, that it was issued by that CA certificate.
    """
    try:
        cert = _load_cert(pair.cert_pem)
    except (ValueError, TypeError):
        return "its certificate does not parse"
    try:
        key = _load_ec_key(pair.key_pem)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return "its private key does not parse or is not an ECDSA key"
    try:
        matches = _public_der(key.public_key()) == _public_der(_ec_public_key(cert.public_key()))
    except ValueError:
        matches = False
    if not matches:
        return "its private key does not match its certificate"
    now = datetime.now(UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        return f"its certificate is not valid now (valid {cert.not_valid_before_utc:%Y-%m-%d} " \
               f"to {cert.not_valid_after_utc:%Y-%m-%d})"
    if _is_ca(cert) != ca:
        return "its certificate is not a CA certificate" if ca else "its certificate is a CA"
    if signed_by is not None and not verify_signed_by(pair.cert_pem, signed_by):
        return "its certificate was not issued by the site's CA"
    return None


def verify_signed_by(cert_pem: bytes, ca_pem: bytes) -> bool:
    """True if ``cert_pem`` names ``ca_pem``'s subject as issuer and carries its signature.

    Checks the issuer name and the signature only: not validity dates, key usage or
    whether ``ca_pem`` is a CA. Malformed input is False, never an exception.
    """
    try:
        cert = _load_cert(cert_pem)
        ca = _load_cert(ca_pem)
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _check_validity(validity: timedelta) -> None:
    if validity <= timedelta(0):
        raise ValueError(f"validity must be positive, not {validity}")


def _load_cert(pem: bytes) -> x509.Certificate:
    if not isinstance(pem, bytes):
        raise ValueError("certificate PEM must be bytes")
    return x509.load_pem_x509_certificate(pem)


def _load_ec_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"expected an ECDSA private key, got {type(key).__name__}")
    return key


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )


def _public_der(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _common_name(cert: x509.Certificate) -> str:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not attrs:
        raise ValueError("certificate has no common name")
    value = attrs[0].value
    return value if isinstance(value, str) else value.decode()


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    return constraints.ca


def _authority_key_identifier(ca_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(
            _ec_public_key(ca_cert.public_key())
        )
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _ec_public_key(key: object) -> ec.EllipticCurvePublicKey:
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError(f"expected an ECDSA public key, got {type(key).__name__}")
    return key


def _sans(hosts: Sequence[str]) -> list[x509.GeneralName]:
    """IP literals (v4, v6, optionally bracketed) as IPAddress, the rest as DNSName."""
    sans: list[x509.GeneralName] = []
    for host in dict.fromkeys(h.strip() for h in hosts):  # de-duplicate, keep order
        if not host:
            raise ValueError("empty host name")
        literal = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        try:
            ip = ipaddress.ip_address(literal)
        except ValueError:
            sans.append(x509.DNSName(host))
        else:
            sans.append(x509.IPAddress(ip))
    return sans
