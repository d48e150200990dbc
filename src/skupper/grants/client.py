"""The redeemer: upstream's protocol with the standard library, so the CLI stays light.

Trusts only the token's CA, requires TLS 1.3, follows no redirects, times out after
10 s, and turns every refusal into words a user understands.
"""

from __future__ import annotations

import http.client
import re
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from skupper.base.errors import SkupperError
from skupper.base.text import printable

REQUEST_TIMEOUT_SECONDS = 10.0
# The answer is a Secret and a few Links: a few KiB.
MAX_ANSWER_BYTES = 1024 * 1024

_REFUSALS = {
    (403, "Redemption of access token refused"): (
        "the grant server refused the token's code",
        "The token may have been altered; ask for a new token.",
    ),
    (404, "No such claim"): (
        "the grant is unknown to the issuing site or has expired",
        "Ask the issuing site for a new token.",
    ),
    (404, "No such access granted"): (
        "the token has already been used as many times as it allows",
        "Ask the issuing site for a new token.",
    ),
}


# A grant server of this project says why it refused a right code for an expired grant.
_EXPIRED = "No such claim: the grant "


@dataclass(frozen=True)
class Answer:
    """A checked redemption answer: exactly what was asked for, nothing else."""

    secret_name: str
    credentials: dict[str, bytes]  # tls.crt, tls.key, ca.crt
    links: list[tuple[str, dict[str, Any]]]  # (name, spec with only the endpoints)


def _fail(url: str, why: str, hint: str = "") -> SkupperError:
    return SkupperError(f"Redeeming the token at {url} failed", why, hint)


def post_redemption(url: str, ca_pem: str, code: str, name: str, subject: str) -> bytes:
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or 443
    context = ssl.create_default_context(cadata=ca_pem)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    connection = http.client.HTTPSConnection(
        host, port, context=context, timeout=REQUEST_TIMEOUT_SECONDS
    )
    path = parts.path or "/"
    try:
        connection.request(
            "POST", path, body=code.encode(),
            headers={"name": name, "subject": subject, "Content-Type": "text/plain"},
        )
        response = connection.getresponse()
        body = response.read(MAX_ANSWER_BYTES + 1)
    except ssl.SSLCertVerificationError as exc:
        raise _fail(url, f"the server's certificate does not match the token's CA "
                         f"({exc.verify_message})",
                    "The token may be for another site or altered; ask for a new one.") from None
    except ssl.SSLError as exc:
        raise _fail(url, f"TLS failed ({exc.reason or exc})") from None
    except ConnectionRefusedError:
        raise _fail(url, f"nothing is listening at {host}:{port}",
                    "Is the issuing site running and reachable from here?") from None
    except TimeoutError:
        raise _fail(url, f"no answer within {REQUEST_TIMEOUT_SECONDS:g} s",
                    "Is the issuing site reachable from here?") from None
    except OSError as exc:
        raise _fail(url, f"cannot reach {host}:{port} ({exc.strerror or exc})") from None
    except http.client.HTTPException as exc:
        raise _fail(url, f"the server did not answer in HTTP ({exc!r})") from None
    finally:
        connection.close()
    if response.status != 200:
        text = body[:500].decode("utf-8", "replace").strip()
        why, hint = _REFUSALS.get(
            (response.status, text),
            (f"the server answered {response.status} {printable(text, 200)}", ""),
        )
        if response.status == 404 and text.startswith(_EXPIRED):
            why = f"the token has expired (its grant {printable(text[len(_EXPIRED):], 80)})"
            hint = "Ask the issuing site for a new token."
        raise _fail(url, why, hint)
    if len(body) > MAX_ANSWER_BYTES:
        raise _fail(url, "the answer is too large to be a redemption answer")
    return body


# An answer holds one Link per endpoint group; upstream makes one or two.
MAX_ANSWER_LINKS = 16
MAX_ENDPOINTS = 16
MAX_CREDENTIAL_BYTES = 64 * 1024
_CREDENTIAL_KEYS = ("tls.crt", "tls.key", "ca.crt")
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}"
                   r"[A-Za-z0-9])?)*\.?")
_LABEL = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,251}[A-Za-z0-9])?")


def parse_answer(url: str, body: bytes, name: str) -> Answer:
    """Check the grant server's answer to a request made with the ``name`` header.

    The answer may only hand over what was asked for: one Secret named ``name`` (a
    client certificate and key issued by the CA it carries) and the Links of that
    redemption, named ``name`` or ``name-1`` ... ``name-N``, each with sane endpoints.
    Anything else is refused, so a grant server cannot choose which of the redeeming
    site's secrets or resources are written.
    """
    import yaml

    from skupper.grants.token_file import load_documents

    try:
        documents = load_documents(body)
    except (yaml.YAMLError, ValueError, RecursionError):
        raise _fail(url, "the answer is not YAML (without aliases)") from None
    if len(documents) > MAX_ANSWER_LINKS + 1:
        raise _fail(url, f"the answer holds {len(documents)} documents; a redemption answer "
                         f"holds one Secret and at most {MAX_ANSWER_LINKS} Links")
    secrets, links = [], []
    for document in documents:
        kind = document.get("kind") if isinstance(document, dict) else None
        if kind == "Secret":
            secrets.append(document)
        elif kind == "Link":
            links.append(document)
        else:
            raise _fail(url, f"the answer holds a {printable(kind or type(document).__name__, 40)}"
                             "; a redemption answer holds only a Secret and Links")
    if len(secrets) != 1 or not links:
        raise _fail(url, "the answer does not hold one Secret and at least one Link")
    _check_name(url, "Secret", _name_of(secrets[0]), name)
    credentials = _credentials(url, secrets[0])
    wanted = [name] if len(links) == 1 else [f"{name}-{i}" for i in range(1, len(links) + 1)]
    named = sorted(((_name_of(link), link) for link in links), key=lambda pair: pair[0])
    found = [link_name for link_name, _ in named]
    if found != sorted(wanted) and not (len(links) == 1 and found == [f"{name}-1"]):
        shown = ", ".join(f'"{printable(n, 80)}"' for n in found[:4])
        raise _fail(url, f"the answer's Links are named {shown}, not after the request "
                         f'("{name}" or "{name}-N")',
                    "The issuing site is not answering as a grant server does; ask it for "
                    "a new token.")
    checked = []
    for link_name, link in named:
        spec = link.get("spec")
        if not isinstance(spec, dict):
            raise _fail(url, f'the answer\'s Link "{link_name}" has no spec')
        credentials_name = spec.get("tlsCredentials", name)
        if credentials_name != name:
            raise _fail(url, f'the answer\'s Link "{link_name}" names the Secret '
                             f'"{printable(credentials_name, 80)}", not "{name}"')
        checked.append((link_name, {"endpoints": _endpoints(url, link_name, spec)}))
    return Answer(secret_name=name, credentials=credentials, links=checked)


def _name_of(document: dict[str, Any]) -> str:
    meta = document.get("metadata")
    value = meta.get("name") if isinstance(meta, dict) else None
    return value if isinstance(value, str) else ""


def _check_name(url: str, kind: str, found: str, wanted: str) -> None:
    if found != wanted:
        raise _fail(url, f'the answer\'s {kind} is named "{printable(found, 80)}", not '
                         f'"{wanted}" as requested',
                    "The issuing site is not answering as a grant server does; ask it for "
                    "a new token.")


def _credentials(url: str, secret: dict[str, Any]) -> dict[str, bytes]:
    """The client certificate, its key and the CA: decoded, and checked to belong together."""
    import base64
    import binascii

    from skupper.certs.issue import KeyPair, is_ca_certificate, key_pair_problem

    data = secret.get("data")
    if not isinstance(data, dict):
        data = {}
    decoded: dict[str, bytes] = {}
    for key in _CREDENTIAL_KEYS:
        value = data.get(key)
        if not isinstance(value, str):
            raise _fail(url, "the answer's Secret lacks tls.crt, tls.key or ca.crt")
        if len(value) > MAX_CREDENTIAL_BYTES:
            raise _fail(url, f"the answer's {key} is too large to be a credential")
        try:
            decoded[key] = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise _fail(url, f"the answer's {key} is not base64") from None
    if not is_ca_certificate(decoded["ca.crt"]):
        raise _fail(url, "the answer's ca.crt is not a CA certificate")
    problem = key_pair_problem(KeyPair(cert_pem=decoded["tls.crt"], key_pem=decoded["tls.key"]),
                               ca=False, signed_by=decoded["ca.crt"])
    if problem:
        problem = problem.replace("the site's CA", "the answer's ca.crt")
        raise _fail(url, f"the answer's client credential is unusable: {problem}")
    return decoded


def _endpoints(url: str, link_name: str, spec: dict[str, Any]) -> list[dict[str, str]]:
    endpoints = spec.get("endpoints")
    if not isinstance(endpoints, list) or not endpoints:
        raise _fail(url, "a Link in the answer has no endpoints")
    if len(endpoints) > MAX_ENDPOINTS:
        raise _fail(url, f'the answer\'s Link "{link_name}" has {len(endpoints)} endpoints; '
                         f"at most {MAX_ENDPOINTS} are accepted")
    checked = []
    for endpoint in endpoints:
        why = _endpoint_problem(endpoint)
        if why:
            raise _fail(url, f'an endpoint of the answer\'s Link "{link_name}" {why}')
        checked.append({key: str(endpoint[key]) for key in ("name", "host", "port", "group")
                        if key in endpoint})
    if not any(e["name"] == "inter-router" for e in checked):
        raise _fail(url, f'the answer\'s Link "{link_name}" has no inter-router endpoint')
    return checked


def _endpoint_problem(endpoint: Any) -> str:
    import ipaddress

    if not isinstance(endpoint, dict):
        return "is not a mapping"
    role, host, port = endpoint.get("name"), endpoint.get("host"), endpoint.get("port")
    group = endpoint.get("group", "")
    if not isinstance(role, str) or not _LABEL.fullmatch(role) or len(role) > 63:
        return "has no valid name"
    if not isinstance(host, str) or len(host) > 253:
        return "has no valid host"
    literal = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(literal)
    except ValueError:
        if not _HOST.fullmatch(host):
            return f'has an invalid host "{printable(host, 80)}"'
    text = str(port) if isinstance(port, (str, int)) and not isinstance(port, bool) else ""
    if not text.isascii() or not text.isdigit() or len(text) > 5 or not 1 <= int(text) <= 65535:
        return f'has an invalid port "{printable(port, 20)}" (1 to 65535)'
    if not isinstance(group, str) or (group and not _LABEL.fullmatch(group)):
        return "has an invalid group"
    return ""
