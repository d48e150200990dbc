"""The redeemer: upstream's protocol with the standard library, so the CLI stays light.

Trusts only the token's CA, requires TLS 1.3, follows no redirects, times out after
10 s, and turns every refusal into words a user understands.
"""

from __future__ import annotations

import http.client
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from skupper.base.errors import SkupperError
from skupper.resources import Resource

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


@dataclass(frozen=True)
class Answer:
    secret: Resource
    links: list[Resource]


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
            (response.status, text), (f"the server answered {response.status} {text}", "")
        )
        raise _fail(url, why, hint)
    if len(body) > MAX_ANSWER_BYTES:
        raise _fail(url, "the answer is too large to be a redemption answer")
    return body


def parse_answer(url: str, body: bytes) -> Answer:
    import yaml

    try:
        documents: list[Any] = [d for d in yaml.safe_load_all(body) if d is not None]
    except yaml.YAMLError:
        raise _fail(url, "the answer is not YAML") from None
    secrets = [d for d in documents if isinstance(d, dict) and d.get("kind") == "Secret"]
    links = [d for d in documents if isinstance(d, dict) and d.get("kind") == "Link"]
    if len(secrets) != 1 or not links:
        raise _fail(url, "the answer does not hold one Secret and at least one Link")
    data = secrets[0].get("data") or {}
    if not all(isinstance(data.get(k), str) for k in ("tls.crt", "tls.key", "ca.crt")):
        raise _fail(url, "the answer's Secret lacks tls.crt, tls.key or ca.crt")
    for link in links:
        endpoints = (link.get("spec") or {}).get("endpoints")
        if not isinstance(endpoints, list) or not endpoints:
            raise _fail(url, "a Link in the answer has no endpoints")
    return Answer(secret=secrets[0], links=links)
