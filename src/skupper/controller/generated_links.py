"""Links generated at this site (``skupper link generate``), each with its own certificate.

A generated link is a Secret and a Link that another site stores (``system apply -f``,
``kubectl apply -f``) to dial this site without a token. Upstream issues one client
certificate per RouterAccess and every static link shares it, so one peer cannot be cut
off alone. Here every generated link gets a client certificate of its own from the site
CA (CN: the link's name; OU: ``GENERATED_LINK_UNIT``, so the listener knows the CN names
no site), and the site remembers it in its status, beside the revocation lists:

``status.generatedLinks[]``: ``name``, ``serial`` (hex), ``expires``, ``time`` (when it
was generated), ``revoked`` (when, once revoked) and ``remoteSiteId``/``remoteSiteName``
(the site that first linked with it: the daemon binds the certificate to that site).

``revoke`` puts the one serial on ``status.revokedCertificates``, the list the link
listener checks at every hello and the link manager applies to live links (as grant
revocation does): that link closes, its dialer is told it was revoked and stops
redialing, and every other link stays up. The Site status outlives the daemon's
restarts, so both lists do too.

Platform-neutral: the CLI runs this over the Store and SecretStore of any platform.
"""

from __future__ import annotations

import base64
import contextlib
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from skupper.base.errors import SkupperError, UsageError
from skupper.base.text import printable
from skupper.certs.issue import (
    KeyPair,
    certificate_not_after,
    issue_certificate,
    key_pair_problem,
)
from skupper.certs.tls import GENERATED_LINK_UNIT
from skupper.controller.credentials import SITE_CA
from skupper.controller.site import link_certificate_validity
from skupper.resources import API_VERSION, Resource
from skupper.resources.generated_links import GENERATED_LINKS, generated_links, live_entry
from skupper.resources.model import format_rfc3339, now_rfc3339, valid_name
from skupper.resources.site import SITE_CREDENTIAL_PREFIX, is_site_credential, link_access_enabled
from skupper.store.interface import NotFound, SecretStore, Store

REVOKED_CERTIFICATES = "revokedCertificates"
# Each entry is a few hundred bytes of the Site's status, and revoked ones are kept (their
# serials must stay refused): a bound keeps the status small enough to rewrite often.
MAX_GENERATED_LINKS = 1000
# The name is the certificate's CN, which X.509 bounds at 64 characters.
MAX_NAME_LENGTH = 63
# A certificate that expires before it could be applied anywhere is a mistake.
MIN_VALIDITY_SECONDS = 60.0


def default_name(site_name: str) -> str:
    """Upstream's default for ``link generate``: ``link-`` and the site's name."""
    return f"link-{site_name}"


def check_name(name: str, option: str = "--name") -> None:
    """Refuse a name that cannot be a Link's, a Secret's and a certificate's CN at once."""
    if len(name) > MAX_NAME_LENGTH or not valid_name(name) or "." in name:
        raise UsageError(f"Invalid value for {option}",
                         f"{printable(repr(name), 80)} is not a valid link name (lowercase "
                         f"letters, digits and '-', at most {MAX_NAME_LENGTH} characters)")
    if is_site_credential(name):
        # The receiving site stores the Secret under this name; the prefix is reserved
        # there for its own credentials, so it would refuse the file.
        raise UsageError(f"Invalid value for {option}",
                         f'"{name}" starts with "{SITE_CREDENTIAL_PREFIX}", which is reserved '
                         "for the sites' own credentials")


@dataclass(frozen=True)
class GeneratedLink:
    name: str
    serial: str  # hex, as revokedCertificates and incomingLinks write it
    expires: str  # RFC 3339
    documents: list[Resource]  # the Secret, then the Link


def _failed(why: str, hint: str = "") -> SkupperError:
    return SkupperError("Generating a link failed", why, hint)


async def _site_ca(secrets: SecretStore) -> KeyPair:
    try:
        data = await secrets.get(SITE_CA)
    except NotFound:
        raise _failed(f'the site CA "{SITE_CA}" does not exist yet',
                      'Wait until "skupper site status" says the site is ready.') from None
    pair = KeyPair(cert_pem=data.get("tls.crt", b""), key_pem=data.get("tls.key", b""))
    problem = key_pair_problem(pair, ca=True)
    if problem:
        raise _failed(f'the site CA "{SITE_CA}" is unusable: {problem}',
                      'See "skupper site status".')
    return pair


def _endpoints(site: Resource) -> list[dict[str, str]]:
    """Where the other site dials: the endpoints a redemption answer would carry."""
    found = []
    for endpoint in (site.get("status") or {}).get("endpoints") or []:
        if isinstance(endpoint, dict) and endpoint.get("name") and endpoint.get("host"):
            found.append({key: str(endpoint[key]) for key in ("name", "host", "port", "group")
                          if endpoint.get(key) not in (None, "")})
    return found


async def generate(
    store: Store, secrets: SecretStore, site: Resource, name: str, cost: int,
    validity: float | None = None,
) -> GeneratedLink:
    """Issue a client certificate for one new generated link, record it, return the files.

    ``validity`` in seconds (default: the site's link-certificate-validity setting). The
    entry is written to the Site's status before anything is returned, so a certificate
    is never handed out that the site could not revoke.
    """
    site_name = str(site["metadata"]["name"])
    if not link_access_enabled(site):
        raise _failed(f'link access is not enabled at site "{site_name}"',
                      'Enable it with "skupper site update --enable-link-access".')
    endpoints = _endpoints(site)
    if not any(e["name"] == "inter-router" for e in endpoints):
        raise _failed(f'site "{site_name}" has no link endpoints yet',
                      'Wait until "skupper site status" says the site is ready.')
    if live_entry(generated_links(site), name) is not None:
        raise _name_taken(name)
    if validity is None:
        validity = link_certificate_validity(site)
    ca = await _site_ca(secrets)
    pair = issue_certificate(ca, name, usage="client", validity=timedelta(seconds=validity),
                             organizational_unit=GENERATED_LINK_UNIT)
    entry = {"name": name, "serial": format(pair.serial, "x"),
             "expires": format_rfc3339(certificate_not_after(pair.cert_pem)),
             "time": now_rfc3339()}

    def record(current: Resource) -> None:
        entries: list[dict[str, Any]] = current.setdefault("status", {}).setdefault(
            GENERATED_LINKS, [])
        if live_entry(generated_links(current), name) is not None:
            raise _name_taken(name)  # generated meanwhile by someone else
        if len(entries) >= MAX_GENERATED_LINKS:
            raise _failed(f"the site has {len(entries)} generated links, the most it keeps")
        entries.append(dict(entry))

    try:
        await store.mutate_status("Site", site_name, record)
    except NotFound:
        raise _failed(f'site "{site_name}" was deleted meanwhile') from None
    return GeneratedLink(name=name, serial=entry["serial"], expires=entry["expires"],
                         documents=_documents(name, cost, pair, ca.cert_pem, endpoints))


async def forget(store: Store, site_name: str, serial: str) -> None:
    """Drop the entry of a certificate that was never handed out (its files were not written).

    Never one that is bound to a site or revoked: that certificate is out there.
    """

    def change(current: Resource) -> None:
        entries = (current.get("status") or {}).get(GENERATED_LINKS) or []
        entries[:] = [e for e in entries if not (
            isinstance(e, dict) and e.get("serial") == serial
            and not e.get("remoteSiteId") and not e.get("revoked"))]

    with contextlib.suppress(NotFound):
        await store.mutate_status("Site", site_name, change)


def _name_taken(name: str) -> SkupperError:
    return SkupperError(f'A generated link named "{name}" already exists',
                        "each generated link has its own name, by which it is revoked",
                        f'Give another name with --name, or revoke it first ("skupper link '
                        f'revoke {name}").')


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _documents(name: str, cost: int, pair: KeyPair, ca_pem: bytes,
               endpoints: list[dict[str, str]]) -> list[Resource]:
    """A Secret and a Link in the shape a redemption answer has (``grants.client``)."""
    secret: Resource = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": name},
        "data": {"ca.crt": _b64(ca_pem), "tls.crt": _b64(pair.cert_pem),
                 "tls.key": _b64(pair.key_pem)},
    }
    link: Resource = {
        "apiVersion": API_VERSION,
        "kind": "Link",
        "metadata": {"name": name},
        "spec": {"endpoints": endpoints, "cost": cost, "tlsCredentials": name},
    }
    return [secret, link]


@dataclass(frozen=True)
class Revocation:
    entry: dict[str, Any]
    already: bool  # it was revoked before this call


async def revoke(store: Store, site_name: str, name: str) -> Revocation:
    """Revoke the generated link ``name``: its serial goes on the site's revocation list.

    Revoking a link revoked before changes nothing and says so; an unknown name is a
    one-line error.
    """
    def change(current: Resource) -> Revocation:
        entries = generated_links(current)
        entry = live_entry(entries, name)
        if entry is None:
            earlier = [e for e in entries if e["name"] == name]
            if earlier:
                return Revocation(dict(earlier[-1]), already=True)
            raise SkupperError(f'No generated link "{name}"',
                               f'site "{site_name}" has generated no link of that name',
                               'List links with "skupper link status".')
        when = now_rfc3339()
        entry["revoked"] = when
        status = current.setdefault("status", {})
        listed: list[dict[str, Any]] = status.setdefault(REVOKED_CERTIFICATES, [])
        if entry["serial"] not in {e.get("serial") for e in listed}:
            listed.append({"serial": entry["serial"], "link": name, "time": when})
        return Revocation(dict(entry), already=False)

    try:
        return await store.mutate_status("Site", site_name, change)
    except NotFound:
        raise SkupperError(f'No generated link "{name}"', f'site "{site_name}" is gone') from None
