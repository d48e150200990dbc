"""The site's CAs and server certificates, created once and kept as secrets.

Their names are reserved (``resources.site.is_site_credential``): nothing a redemption
brings can be stored under them. A CA that exists is never replaced here, even when it
is broken: every link certificate the site issued hangs on it, so a broken CA is
reported (``BrokenCredential``) for a person to restore. Server certificates are derived
from a CA and reissued whenever they are not usable.
"""

from __future__ import annotations

from collections.abc import Sequence

from skupper.certs.issue import KeyPair, generate_ca, issue_certificate, key_pair_problem
from skupper.resources.site import is_site_credential
from skupper.store.interface import NotFound, SecretStore, StoreError

SITE_CA = "skupper-site-ca"
SITE_SERVER = "skupper-site-server"
GRANT_SERVER_CA = "skupper-grant-server-ca"
GRANT_SERVER = "skupper-grant-server"

# Every name above carries the reserved prefix (a unit test checks it; reading or
# writing one that does not fails here at run time too).
SITE_CREDENTIALS = (SITE_CA, SITE_SERVER, GRANT_SERVER_CA, GRANT_SERVER)

# A server certificate remembers the hosts it was issued for, so a changed
# --link-access-host is noticed and the certificate reissued.
_HOSTS_KEY = "hosts"


class BrokenCredential(Exception):
    """One of the site's own credentials exists but cannot be used."""

    def __init__(self, name: str, why: str) -> None:
        self.name = name
        self.why = why
        super().__init__(f'the site credential "{name}" is unusable: {why}')


def _pair(data: dict[str, bytes]) -> KeyPair:
    return KeyPair(cert_pem=data["tls.crt"], key_pem=data["tls.key"])


async def _read(secrets: SecretStore, name: str) -> dict[str, bytes]:
    """The secret's data; NotFound if absent; BrokenCredential if it cannot be read."""
    try:
        return await secrets.get(name)
    except NotFound:
        raise
    except (OSError, StoreError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise BrokenCredential(name, f"it cannot be read ({why})") from None


async def ensure_ca(secrets: SecretStore, name: str, common_name: str) -> KeyPair:
    """The CA kept as ``name``, made if absent; BrokenCredential if it exists but is unusable."""
    _check_reserved(name)
    try:
        data = await _read(secrets, name)
    except NotFound:
        ca = generate_ca(common_name)
        await secrets.put(name, {"tls.crt": ca.cert_pem, "tls.key": ca.key_pem,
                                 "ca.crt": ca.cert_pem})
        return ca
    if "tls.crt" not in data or "tls.key" not in data:
        raise BrokenCredential(name, "it lacks tls.crt or tls.key")
    pair = _pair(data)
    problem = key_pair_problem(pair, ca=True)
    if problem:
        raise BrokenCredential(name, problem)
    return pair


async def ensure_server_certificate(
    secrets: SecretStore, name: str, ca: KeyPair, hosts: Sequence[str]
) -> KeyPair:
    """A usable server certificate from ``ca`` for ``hosts``; reissued when it is not."""
    _check_reserved(name)
    wanted = ",".join(hosts).encode()
    try:
        data = await _read(secrets, name)
    except (NotFound, BrokenCredential):
        data = {}
    if (data.get(_HOSTS_KEY) == wanted and data.get("ca.crt") == ca.cert_pem
            and "tls.crt" in data and "tls.key" in data
            and key_pair_problem(_pair(data), ca=False, signed_by=ca.cert_pem) is None):
        return _pair(data)
    pair = issue_certificate(ca, hosts[0], usage="server", hosts=hosts)
    try:
        await secrets.put(name, {"tls.crt": pair.cert_pem, "tls.key": pair.key_pem,
                                 "ca.crt": ca.cert_pem, _HOSTS_KEY: wanted})
    except (OSError, StoreError, ValueError) as exc:
        raise BrokenCredential(name, f"it cannot be rewritten ({exc})") from None
    return pair


def _check_reserved(name: str) -> None:
    if not is_site_credential(name):
        raise ValueError(f"{name!r} is not a reserved site credential name")
