"""The site's CAs and server certificates, created once and kept as secrets."""

from __future__ import annotations

from collections.abc import Sequence

from skupper.certs.issue import KeyPair, generate_ca, issue_certificate
from skupper.store.interface import NotFound, SecretStore

SITE_CA = "skupper-site-ca"
SITE_SERVER = "skupper-site-server"
GRANT_SERVER_CA = "skupper-grant-server-ca"
GRANT_SERVER = "skupper-grant-server"

# A server certificate remembers the hosts it was issued for, so a changed
# --link-access-host is noticed and the certificate reissued.
_HOSTS_KEY = "hosts"


def _pair(data: dict[str, bytes]) -> KeyPair:
    return KeyPair(cert_pem=data["tls.crt"], key_pem=data["tls.key"])


async def ensure_ca(secrets: SecretStore, name: str, common_name: str) -> KeyPair:
    try:
        return _pair(await secrets.get(name))
    except NotFound:
        ca = generate_ca(common_name)
        await secrets.put(name, {"tls.crt": ca.cert_pem, "tls.key": ca.key_pem,
                                 "ca.crt": ca.cert_pem})
        return ca


async def ensure_server_certificate(
    secrets: SecretStore, name: str, ca: KeyPair, hosts: Sequence[str]
) -> KeyPair:
    wanted = ",".join(hosts).encode()
    try:
        data = await secrets.get(name)
        if data.get(_HOSTS_KEY) == wanted and data.get("ca.crt") == ca.cert_pem:
            return _pair(data)
    except NotFound:
        pass
    pair = issue_certificate(ca, hosts[0], usage="server", hosts=hosts)
    await secrets.put(name, {"tls.crt": pair.cert_pem, "tls.key": pair.key_pem,
                             "ca.crt": ca.cert_pem, _HOSTS_KEY: wanted})
    return pair
