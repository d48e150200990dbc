"""TLS contexts for mutually-authenticated links: TLS 1.3 only, one trusted CA.

Standard library only (no ``cryptography``): the CLI imports this module on its
cold-start path. Each context trusts exactly the CA it is handed, never the system
store. A server built with a client CA requires a client certificate signed by that
CA; with TLS 1.3 the client learns of a refusal on its first read, not at connect.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from dataclasses import dataclass
from typing import Any

_DIR_MODE = 0o700
_FILE_MODE = 0o600


def server_context(
    cert_pem: bytes, key_pem: bytes, *, client_ca_pem: bytes | None = None
) -> ssl.SSLContext:
    """A TLS 1.3 server context; with ``client_ca_pem``, clients must present a cert from it."""
    ctx = _new_server_context()
    _load_chain(ctx, cert_pem, key_pem)
    if client_ca_pem is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cadata=_pem_text(client_ca_pem))
    return ctx


def client_context(
    ca_pem: bytes,
    *,
    cert_pem: bytes | None = None,
    key_pem: bytes | None = None,
    check_hostname: bool = True,
) -> ssl.SSLContext:
    """A TLS 1.3 client context trusting only ``ca_pem``, optionally with a client cert."""
    if (cert_pem is None) != (key_pem is None):
        raise ValueError("cert_pem and key_pem must be given together")
    ctx = _new_client_context(check_hostname)
    ctx.load_verify_locations(cadata=_pem_text(ca_pem))
    if cert_pem is not None and key_pem is not None:
        _load_chain(ctx, cert_pem, key_pem)
    return ctx


def server_context_from_files(
    cert_file: str | os.PathLike[str],
    key_file: str | os.PathLike[str],
    *,
    client_ca_file: str | os.PathLike[str] | None = None,
) -> ssl.SSLContext:
    """Like :func:`server_context`, for callers that keep the PEMs as files."""
    ctx = _new_server_context()
    ctx.load_cert_chain(certfile=cert_file, keyfile=key_file)
    if client_ca_file is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=client_ca_file)
    return ctx


def client_context_from_files(
    ca_file: str | os.PathLike[str],
    cert_file: str | os.PathLike[str] | None = None,
    key_file: str | os.PathLike[str] | None = None,
    check_hostname: bool = True,
) -> ssl.SSLContext:
    """Like :func:`client_context`, for callers that keep the PEMs as files."""
    if (cert_file is None) != (key_file is None):
        raise ValueError("cert_file and key_file must be given together")
    ctx = _new_client_context(check_hostname)
    ctx.load_verify_locations(cafile=ca_file)
    if cert_file is not None and key_file is not None:
        ctx.load_cert_chain(certfile=cert_file, keyfile=key_file)
    return ctx


def _verified_peer_cert(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> dict[str, Any]:
    """``getpeercert()``'s dict: filled in only for a certificate the handshake verified."""
    if ssl_object is None:
        return {}
    try:
        cert: Any = ssl_object.getpeercert()
    except ValueError:  # handshake not done yet
        return {}
    return dict(cert or {})


# The OU of a generated link's certificate (``skupper link generate``): its CN names the
# link, not a site, so the hello's site name is not held to it; the daemon binds the
# certificate to the first site that links with it instead.
GENERATED_LINK_UNIT = "skupper-generated-link"


@dataclass(frozen=True)
class PeerCertificate:
    """Who a verified peer certificate says its holder is.

    For a link certificate: the CN is the redeeming site's name (the ``subject`` it
    gave at redemption) and the OU names the grant it was issued from.
    """

    serial: int | None = None
    common_name: str | None = None
    unit: str | None = None


def peer_certificate(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> PeerCertificate:
    """The verified peer certificate's serial, CN and OU, from one ``getpeercert()``.

    All None without a verified certificate. A certificate with several CNs or OUs
    gives None for that field: the identity must be unambiguous to be used.
    """
    cert = _verified_peer_cert(ssl_object)
    serial = cert.get("serialNumber")
    found: dict[str, list[str]] = {"commonName": [], "organizationalUnitName": []}
    for rdn in cert.get("subject", ()):
        for attribute in rdn:
            if attribute[0] in found:
                found[attribute[0]].append(str(attribute[1]))
    names, units = found["commonName"], found["organizationalUnitName"]
    return PeerCertificate(
        serial=int(serial, 16) if isinstance(serial, str) else None,
        common_name=names[0] if len(names) == 1 else None,
        unit=units[0] if len(units) == 1 else None,
    )


def peer_identity(
    ssl_object: ssl.SSLObject | ssl.SSLSocket | None,
) -> tuple[int | None, str | None]:
    """The verified peer certificate's serial and OU (link certificates name their grant
    there), read from one ``getpeercert()``."""
    cert = peer_certificate(ssl_object)
    return cert.serial, cert.unit


def peer_certificate_serial(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> int | None:
    """The verified peer certificate's serial (given as hex), or None without one."""
    return peer_identity(ssl_object)[0]


def _new_server_context() -> ssl.SSLContext:
    # A bare SSLContext loads no system CAs: only what we add is trusted.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return ctx


def _new_client_context(check_hostname: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = check_hostname
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _pem_text(pem: bytes) -> str:
    # ``cadata`` treats str as PEM and bytes as DER, so PEM must go in as text.
    return pem.decode("ascii")


def _load_chain(ctx: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    """``load_cert_chain`` wants paths: write to a private temp folder, load, remove it."""
    folder = tempfile.mkdtemp(prefix="skupper-tls-")
    paths: list[str] = []
    try:
        os.chmod(folder, _DIR_MODE)
        cert_file = _write_private(folder, "tls.crt", cert_pem, paths)
        key_file = _write_private(folder, "tls.key", key_pem, paths)
        ctx.load_cert_chain(certfile=cert_file, keyfile=key_file)
    finally:
        for path in paths:
            os.unlink(path)
        os.rmdir(folder)


def _write_private(folder: str, name: str, data: bytes, created: list[str]) -> str:
    path = os.path.join(folder, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, _FILE_MODE)
    created.append(path)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return path
