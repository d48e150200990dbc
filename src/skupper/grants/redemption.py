"""The redemption transaction: check a code, issue a credential, count it. No HTTP here.

Order matters for what a caller learns. An unknown grant id gets 404. A known grant
checks the code first, in constant time, so a caller without the code cannot tell an
expired or used-up grant from a live one. Only then are expiry and the remaining
count checked, and the count grows in the same transaction that issued the
certificate: a failure anywhere leaves the count unchanged (upstream weaknesses 1-3).

Wrong codes never lock a grant (anyone who knows its URL could lock its holder out):
they are slowed per source and per grant (``limits``), recorded in the ledger while
the grant's budget lasts, and counted beyond it.
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
from skupper.grants.index import index_for
from skupper.grants.limits import Unrecorded, WrongCodeLimits, retry_after
from skupper.resources import API_VERSION, Resource
from skupper.resources.model import parse_rfc3339, valid_name
from skupper.store.interface import NotFound, Store

# The CN of an issued certificate: a DNS-1123 name (63 characters at most, so it fits a
# CN) or a UUID, nothing else.
_SUBJECT = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")

# A grant allows at most this many redemptions: far more than any site links, and small
# enough that every count stays an ordinary number everywhere it is shown or stored.
MAX_REDEMPTIONS_ALLOWED = 1_000_000


class Refusal(Exception):
    """A redemption refused with an HTTP status and upstream's plain-text reason."""

    def __init__(self, status: int, reason: str, retry_after: int | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        # Seconds, for a Retry-After header (429 only).
        self.retry_after = retry_after


def no_such_claim() -> Refusal:
    return Refusal(404, "No such claim")


def expired(when: str) -> Refusal:
    """Upstream says only "No such claim" for an expired grant; the caller showed the
    right code, so it may learn why (upstream's redeemers show the text as it is)."""
    return Refusal(404, f"No such claim: the grant expired at {when}")


def used_up() -> Refusal:
    return Refusal(404, "No such access granted")


def wrong_code() -> Refusal:
    return Refusal(403, "Redemption of access token refused")


def too_many_wrong_codes(wait: float) -> Refusal:
    seconds = retry_after(wait)
    return Refusal(429, f"Too many wrong codes; try again in {seconds} s", seconds)


def redemptions_allowed(grant: Resource) -> int:
    """The grant's ``spec.redemptionsAllowed``, checked; ValueError says what is wrong."""
    value = (grant.get("spec") or {}).get("redemptionsAllowed")
    if value is None:
        return 1
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("redemptionsAllowed must be a whole number")
    if isinstance(value, str):
        if not value.isascii() or not value.isdigit() or len(value) > 12:
            raise ValueError("redemptionsAllowed must be a whole number")
        value = int(value)
    if not 1 <= value <= MAX_REDEMPTIONS_ALLOWED:
        raise ValueError(f"redemptionsAllowed must be between 1 and {MAX_REDEMPTIONS_ALLOWED}")
    return value


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


# The grant keeps the newest entries (wrong codes dropped first, then other refusals);
# older ones are counted, and the daemon's log has them all. Every redemption rewrites
# the whole grant, so its size is paid on each one: 32 entries (about 7 KiB) instead of
# 100 took redemptions under load from ~50% to ~65% of a bare TLS server's rate
# (bench/bench_issue.py).
LEDGER_LIMIT = 32
REVOKED_ANNOTATION = "skupper.io/revoked"
WRONG_CODE = "refused: wrong code"
REDEEMED = "redeemed"


@dataclass(frozen=True)
class Verdict:
    """What one look at a grant decided; exactly one of the two is set."""

    credential: Credential | None = None
    refusal: Refusal | None = None
    # The right code was shown and everything checks out, but no credential was
    # offered yet: make one and ask again.
    needs_credential: bool = False


GRANT_UNIT_PREFIX = "skupper-grant:"


def grant_unit(grant_id: str) -> str:
    """The OU of a link certificate: which grant it was issued from."""
    return GRANT_UNIT_PREFIX + grant_id


def grant_of_unit(unit: str | None) -> str | None:
    if unit and unit.startswith(GRANT_UNIT_PREFIX):
        return unit[len(GRANT_UNIT_PREFIX):]
    return None


def is_revoked(grant: Resource) -> bool:
    annotations = grant.get("metadata", {}).get("annotations") or {}
    return REVOKED_ANNOTATION in annotations


def judge(
    grant: Resource,
    request: RedemptionRequest,
    now: datetime,
    credential: Credential | None,
) -> Verdict:
    """Decide one attempt, editing ``grant['status']`` with what must be remembered.

    Every attempt that reaches here is recorded in the ledger, whatever its outcome (the
    caller keeps wrong codes beyond the grant's budget from reaching here). The count
    grows only with a credential.
    """
    status = grant.setdefault("status", {})
    expected = status.get("code")
    if not expected:
        return Verdict(refusal=no_such_claim())
    if not codes_match(request.code, expected):
        status["wrongCodes"] = int(status.get("wrongCodes") or 0) + 1
        _record(status, request, now, WRONG_CODE, None)
        return Verdict(refusal=wrong_code())
    made = int(status.get("redemptions") or 0)
    expires = status.get("expirationTime")
    refusal: Refusal | None = None
    try:
        allowed = redemptions_allowed(grant)
    except ValueError:
        allowed = 0
    if is_revoked(grant):
        outcome, refusal = "refused: revoked", no_such_claim()
    elif not allowed or not expires:
        outcome, refusal = "refused: invalid grant", no_such_claim()
    elif parse_rfc3339(expires) <= now:
        outcome, refusal = "refused: expired", expired(expires)
    elif made >= allowed:
        outcome, refusal = "refused: used up", used_up()
    elif credential is None:
        return Verdict(needs_credential=True)
    else:
        outcome = REDEEMED
        status["redemptions"] = made + 1
    _record(status, request, now, outcome, credential if refusal is None else None)
    return Verdict(credential=None if refusal else credential, refusal=refusal)


def _record(
    status: dict[str, Any], request: RedemptionRequest, now: datetime, outcome: str,
    credential: Credential | None,
) -> None:
    from skupper.resources.model import format_rfc3339

    entry = {
        "time": format_rfc3339(now),
        "remote": request.remote,
        "name": request.name,
        "subject": request.subject,
        "outcome": outcome,
    }
    if credential is not None:
        entry["serial"] = format(credential.serial, "x")
    ledger: list[dict[str, Any]] = status.setdefault("ledger", [])
    ledger.append(entry)
    while len(ledger) > LEDGER_LIMIT:
        # Wrong codes go first, then other refusals: the entries that name issued
        # certificates are the ones an audit needs. (The daemon's log keeps every attempt.)
        index = _first(ledger, lambda e: e.get("outcome") == WRONG_CODE)
        if index is None:
            index = _first(ledger, lambda e: e.get("outcome") != REDEEMED) or 0
        del ledger[index]
        status["ledgerDropped"] = int(status.get("ledgerDropped") or 0) + 1


def _first(ledger: list[dict[str, Any]], match: Callable[[dict[str, Any]], bool]) -> int | None:
    return next((i for i, entry in enumerate(ledger) if match(entry)), None)


def add_unrecorded(status: dict[str, Any], counts: Unrecorded) -> None:
    """Fold attempts answered 429 (and not recorded one by one) into the grant's totals."""
    if counts.wrong_codes:
        status["wrongCodes"] = int(status.get("wrongCodes") or 0) + counts.wrong_codes
    if counts.rate_limited:
        status["rateLimited"] = int(status.get("rateLimited") or 0) + counts.rate_limited


async def find_grant(store: Store, grant_id: str) -> Resource:
    """The grant whose uid is ``grant_id``: a dict lookup and one read, never a listing."""
    index = index_for(store)
    name = await index.name_of(store, grant_id)
    if name is None:
        raise no_such_claim()
    return await _read(store, grant_id, name)


async def _read(store: Store, grant_id: str, name: str) -> Resource:
    try:
        grant = await store.get("AccessGrant", name)
    except NotFound:
        grant = None
    if grant is None or grant["metadata"].get("uid") != grant_id:
        index_for(store).forget(grant_id)  # deleted (and maybe recreated): gone for good
        raise no_such_claim()
    return grant


async def redeem(
    store: Store,
    request: RedemptionRequest,
    issue: Callable[[str, str], Credential],
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    limits: WrongCodeLimits | None = None,
) -> Credential:
    """Run one redemption; raise Refusal for every refusal.

    ``issue(subject, grant_id)`` makes the credential; the certificate names its grant,
    so revoking the grant revokes it.

    A first look at a snapshot decides whether to make a credential at all, so only a
    caller with the right code makes this site sign anything, and the store's write lock
    is held only for the checks, the ledger and the count. The transaction judges again:
    a credential whose redemption lost a race is thrown away, never handed out or counted.

    With ``limits``, the code is still compared first, so a right code is never slowed;
    a wrong code beyond its source's or its grant's budget is held briefly, answered 429
    and only counted (``limits``).
    """
    check_request(request)
    snapshot = await find_grant(store, request.grant_id)
    name = str(snapshot["metadata"]["name"])
    expected = (snapshot.get("status") or {}).get("code")
    if not expected:
        raise no_such_claim()
    right = codes_match(request.code, str(expected))
    if not right and limits is not None:
        wait = limits.wrong_code(request.remote, name)
        if wait:
            limits.count(name)
            await asyncio.sleep(limits.hold(wait))
            raise too_many_wrong_codes(wait)
    credential: Credential | None = None
    if right and judge(snapshot, request, now(), None).needs_credential:
        credential = await asyncio.to_thread(issue, request.subject, request.grant_id)
    pending = limits.take_unrecorded(name) if limits is not None else Unrecorded()
    for _ in range(2):
        offered = credential
        counts = pending

        def look(grant: Resource, offered: Credential | None = offered,
                 counts: Unrecorded = counts) -> Verdict:
            verdict = judge(grant, request, now(), offered)
            add_unrecorded(grant["status"], counts)
            return verdict

        try:
            verdict = await store.mutate_status("AccessGrant", name, look)
        except NotFound:
            raise no_such_claim() from None
        except BaseException:
            if limits is not None:
                limits.put_back(name, pending)
            raise
        pending = Unrecorded()
        if verdict.refusal is not None:
            raise verdict.refusal
        if verdict.credential is not None:
            return verdict.credential
        # The grant became redeemable between the looks (a refund): sign and go again.
        credential = await asyncio.to_thread(issue, request.subject, request.grant_id)
    raise Refusal(503, "Internal error")


async def write_unrecorded(store: Store, limits: WrongCodeLimits) -> None:
    """Write the counts of attempts answered 429 onto their grants (about once a second)."""
    for name in list(limits.unrecorded):
        counts = limits.take_unrecorded(name)

        def change(grant: Resource, counts: Unrecorded = counts) -> None:
            add_unrecorded(grant.setdefault("status", {}), counts)

        try:
            await store.mutate_status("AccessGrant", name, change)
        except NotFound:
            continue  # the grant is gone, and its counts with it
        except BaseException:
            limits.put_back(name, counts)
            raise


async def refund(store: Store, grant_id: str, serial: int) -> None:
    """The client left before its answer: give the redemption back, distrust the cert.

    The ledger entry says so; the grant reconciler revokes the certificate, since a
    client that vanished mid-answer may still have received it.
    """
    grant = await find_grant(store, grant_id)

    def change(current: Resource) -> None:
        status = current.setdefault("status", {})
        for entry in reversed(status.get("ledger") or []):
            if entry.get("serial") == format(serial, "x") and entry["outcome"] == REDEEMED:
                entry["outcome"] = "client-gone"
                status["redemptions"] = max(0, int(status.get("redemptions") or 0) - 1)
                status.setdefault("distrustedCertificates", []).append(entry["serial"])
                return

    await store.mutate_status("AccessGrant", str(grant["metadata"]["name"]), change)


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
