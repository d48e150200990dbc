"""The redemption transaction: check a code, issue a credential, count it. No HTTP here.

Order matters for what a caller learns. An unknown grant id gets 404. A known grant
checks the code first, in constant time, so a caller without the code cannot tell an
expired or used-up grant from a live one. Only then are expiry and the remaining
count checked, and the count grows in the same transaction that issued the
certificate: a failure anywhere leaves the count unchanged (upstream weaknesses 1-3).
"""

from __future__ import annotations

import asyncio
import base64
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from skupper.grants.codes import codes_match
from skupper.resources import API_VERSION, Resource
from skupper.resources.model import parse_rfc3339, valid_name
from skupper.store.interface import NotFound, Store

# The CN of an issued certificate: a DNS-1123 label-ish name or a UUID, nothing else.
_SUBJECT = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class Refusal(Exception):
    """A redemption refused with an HTTP status and upstream's plain-text reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def no_such_claim() -> Refusal:
    return Refusal(404, "No such claim")


def used_up() -> Refusal:
    return Refusal(404, "No such access granted")


def wrong_code() -> Refusal:
    return Refusal(403, "Redemption of access token refused")


@dataclass(frozen=True)
class RedemptionRequest:
    grant_id: str
    code: bytes
    name: str
    subject: str
    remote: str = ""


@dataclass(frozen=True)
class Credential:
    cert_pem: bytes
    key_pem: bytes
    serial: int


def check_request(request: RedemptionRequest) -> None:
    if not request.code:
        raise Refusal(400, "Request body not valid")
    if not valid_name(request.name):
        raise Refusal(400, "Header 'name' must be a valid resource name (DNS-1123)")
    if not _valid_subject(request.subject):
        raise Refusal(400, "Header 'subject' must be a DNS-1123 name or a UUID")


def _valid_subject(subject: str) -> bool:
    if len(subject) <= 63 and _SUBJECT.fullmatch(subject):
        return True
    # Only the canonical 36-character form: uuid.UUID also takes braces and urn: prefixes.
    try:
        return str(uuid.UUID(subject)) == subject.lower() and len(subject) == 36
    except ValueError:
        return False


def decide(
    grant: Resource,
    code: bytes,
    now: datetime,
    issue: Callable[[], Credential],
) -> Credential:
    """Inside the transaction: refuse, or issue and count. Edits ``grant['status']``."""
    status = grant.setdefault("status", {})
    expected = status.get("code")
    if not expected:
        raise no_such_claim()
    if not codes_match(code, expected):
        raise wrong_code()
    expires = status.get("expirationTime")
    if not expires or parse_rfc3339(expires) <= now:
        raise no_such_claim()
    allowed = int(grant.get("spec", {}).get("redemptionsAllowed") or 1)
    made = int(status.get("redemptions") or 0)
    if made >= allowed:
        raise used_up()
    credential = issue()
    status["redemptions"] = made + 1
    return credential


async def find_grant(store: Store, grant_id: str) -> Resource:
    for grant in await store.list("AccessGrant"):
        if grant["metadata"].get("uid") == grant_id:
            return grant
    raise no_such_claim()


async def redeem(
    store: Store,
    request: RedemptionRequest,
    issue: Callable[[str], Credential],
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Credential:
    """Run one redemption; raise Refusal for every refusal.

    The credential is made before the write transaction, so the store's write lock is
    held only for the checks and the count, and only for a caller who showed the right
    code (a first check on a snapshot). The transaction checks everything again: a
    credential whose redemption lost a race is thrown away, never handed out or counted.
    """
    check_request(request)
    snapshot = await find_grant(store, request.grant_id)
    credential = await asyncio.to_thread(
        decide, snapshot, request.code, now(), lambda: issue(request.subject)
    )
    try:
        return await store.mutate_status(
            "AccessGrant",
            snapshot["metadata"]["name"],
            lambda grant: decide(grant, request.code, now(), lambda: credential),
        )
    except NotFound:
        raise no_such_claim() from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def answer_documents(
    name: str, credential: Credential, ca_pem: bytes, endpoints: list[dict[str, Any]]
) -> list[Resource]:
    """The Secret and one Link per endpoint group, as upstream's grant server answers."""
    secret: Resource = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": name},
        "data": {
            "tls.crt": _b64(credential.cert_pem),
            "tls.key": _b64(credential.key_pem),
            "ca.crt": _b64(ca_pem),
        },
    }
    groups: dict[str, list[dict[str, Any]]] = {}
    for endpoint in endpoints:
        groups.setdefault(str(endpoint.get("group", "")), []).append(
            {
                "name": endpoint["name"],
                "host": endpoint["host"],
                "port": str(endpoint["port"]),
                "group": endpoint.get("group", ""),
            }
        )
    links: list[Resource] = []
    for index, group_endpoints in enumerate(groups.values(), start=1):
        link_name = name if len(groups) == 1 else f"{name}-{index}"
        links.append(
            {
                "apiVersion": API_VERSION,
                "kind": "Link",
                "metadata": {"name": link_name},
                "spec": {"endpoints": group_endpoints, "tlsCredentials": name},
            }
        )
    return [secret, *links]
