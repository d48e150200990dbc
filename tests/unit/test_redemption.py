"""The redemption transaction without HTTP: what is refused, in which order, and what counts."""

from __future__ import annotations

import base64
import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skupper.grants.redemption import (
    LEDGER_LIMIT,
    MAX_REDEMPTIONS_ALLOWED,
    Credential,
    RedemptionRequest,
    Refusal,
    answer_documents,
    check_request,
    judge,
    redemptions_allowed,
)
from skupper.resources import API_VERSION, Resource
from skupper.resources.model import format_rfc3339

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
CODE = "Abcdefghijklmnopqrstuvw1"
CREDENTIAL = Credential(cert_pem=b"CERT", key_pem=b"KEY", serial=7)


def _grant(*, made: int = 0, allowed: int = 1, expires_in: float = 600.0) -> Resource:
    return {
        "apiVersion": API_VERSION,
        "kind": "AccessGrant",
        "metadata": {"name": "west-grant", "uid": "1b4e28ba-2fa1-11d2-883f-0016d3cca427"},
        "spec": {"redemptionsAllowed": allowed, "expirationWindow": "15m0s"},
        "status": {
            "code": CODE,
            "redemptions": made,
            "expirationTime": format_rfc3339(NOW + timedelta(seconds=expires_in)),
        },
    }


class _Issuer:
    """An issue callable that counts its calls (and can fail)."""

    def __init__(self, fail: bool = False) -> None:
        self.calls = 0
        self.fail = fail

    def __call__(self) -> Credential:
        self.calls += 1
        if self.fail:
            raise RuntimeError("the CA is unreadable")
        return CREDENTIAL


def decide(grant: Resource, code: bytes, now: datetime, issue: Any) -> Credential:
    """The grant server's two looks at a grant, as one call: refuse, or issue and count."""
    request = RedemptionRequest(grant_id="g", code=code, name="link", subject="east")
    verdict = judge(grant, request, now, None)
    if verdict.needs_credential:
        verdict = judge(grant, request, now, issue())
    if verdict.refusal is not None:
        raise verdict.refusal
    assert verdict.credential is not None
    return verdict.credential


def _refusal(grant: Resource, code: bytes, issue: _Issuer | None = None) -> Refusal:
    with pytest.raises(Refusal) as excinfo:
        decide(grant, code, NOW, issue or _Issuer())
    return excinfo.value


# --- decide -------------------------------------------------------------------------------


def test_success_issues_once_and_counts() -> None:
    grant = _grant(made=0, allowed=2)
    issue = _Issuer()
    assert decide(grant, CODE.encode(), NOW, issue) is CREDENTIAL
    assert issue.calls == 1
    assert grant["status"]["redemptions"] == 1
    assert decide(grant, CODE.encode(), NOW, issue) is CREDENTIAL
    assert grant["status"]["redemptions"] == 2


def test_wrong_code_is_refused_with_403_and_nothing_counted() -> None:
    grant = _grant()
    issue = _Issuer()
    refusal = _refusal(grant, b"not-the-code", issue)
    assert (refusal.status, refusal.reason) == (403, "Redemption of access token refused")
    assert issue.calls == 0
    assert grant["status"]["redemptions"] == 0


def test_wrong_codes_never_lock_the_grant_and_are_recorded() -> None:
    grant = _grant(allowed=1)
    for _ in range(50):
        assert _refusal(grant, b"W" * 24).status == 403
    assert grant["status"]["wrongCodes"] == 50
    ledger = grant["status"]["ledger"]
    assert len(ledger) == LEDGER_LIMIT
    assert {e["outcome"] for e in ledger} == {"refused: wrong code"}
    assert ledger[0]["name"] == "link" and ledger[0]["subject"] == "east"
    assert decide(grant, CODE.encode(), NOW, _Issuer()) is CREDENTIAL  # no lock


def test_wrong_codes_are_dropped_from_the_ledger_before_redemptions_and_refusals() -> None:
    grant = _grant(allowed=2)
    decide(grant, CODE.encode(), NOW, _Issuer())
    decide(grant, CODE.encode(), NOW, _Issuer())
    _refusal(grant, CODE.encode())  # used up: a refusal with the right code
    for _ in range(LEDGER_LIMIT + 5):
        _refusal(grant, b"W" * 24)
    outcomes = [e["outcome"] for e in grant["status"]["ledger"]]
    assert outcomes[:3] == ["redeemed", "redeemed", "refused: used up"]
    assert len(outcomes) == LEDGER_LIMIT
    assert grant["status"]["ledgerDropped"] == 3 + LEDGER_LIMIT + 5 - LEDGER_LIMIT


@pytest.mark.parametrize("value", [1, 5, MAX_REDEMPTIONS_ALLOWED, "7", None])
def test_redemptions_allowed_in_range(value: Any) -> None:
    grant = _grant()
    grant["spec"]["redemptionsAllowed"] = value
    assert redemptions_allowed(grant) == (1 if value is None else int(value))


_OUT_OF_RANGE = [0, -1, MAX_REDEMPTIONS_ALLOWED + 1, 10**5000, "9" * 5000, True, 1.5, "one",
                 "", [], {"a": 1}, "\u0663"]


@pytest.mark.parametrize("value", _OUT_OF_RANGE, ids=[str(i) for i in range(len(_OUT_OF_RANGE))])
def test_redemptions_allowed_out_of_range_is_refused_not_a_crash(value: Any) -> None:
    grant = _grant()
    grant["spec"]["redemptionsAllowed"] = value
    with pytest.raises(ValueError):
        redemptions_allowed(grant)
    # With the right code, such a grant is refused like an unknown one, and recorded.
    issue = _Issuer()
    assert _refusal(grant, CODE.encode(), issue).reason == "No such claim"
    assert issue.calls == 0
    assert grant["status"]["ledger"][-1]["outcome"] == "refused: invalid grant"


@pytest.mark.parametrize(
    "grant",
    [
        _grant(expires_in=-1),  # expired
        _grant(made=1, allowed=1),  # used up
        _grant(made=5, allowed=3, expires_in=-3600),  # both
    ],
    ids=["expired", "used-up", "expired-and-used-up"],
)
def test_wrong_code_is_checked_before_expiry_and_count(grant: Resource) -> None:
    """A caller without the code cannot learn whether the grant is live (weakness 3)."""
    refusal = _refusal(grant, CODE.lower().encode())
    assert refusal.status == 403


def test_prefix_of_the_code_is_wrong() -> None:
    assert _refusal(_grant(), CODE[:-1].encode()).status == 403
    assert _refusal(_grant(), (CODE + "x").encode()).status == 403


def test_expired_grant_with_right_code_is_no_such_claim() -> None:
    grant = _grant(expires_in=-1)
    issue = _Issuer()
    refusal = _refusal(grant, CODE.encode(), issue)
    # The holder of the right code may learn why: upstream's words, and when.
    assert refusal.status == 404
    expires = grant["status"]["expirationTime"]
    assert refusal.reason == f"No such claim: the grant expired at {expires}"
    assert issue.calls == 0


def test_expiry_instant_itself_is_expired() -> None:
    assert _refusal(_grant(expires_in=0), CODE.encode()).reason.startswith(
        "No such claim: the grant expired at ")


def test_used_up_grant_is_no_such_access_granted() -> None:
    grant = _grant(made=3, allowed=3)
    issue = _Issuer()
    refusal = _refusal(grant, CODE.encode(), issue)
    assert (refusal.status, refusal.reason) == (404, "No such access granted")
    assert issue.calls == 0
    assert grant["status"]["redemptions"] == 3


def test_grant_without_code_or_expiry_is_no_such_claim() -> None:
    no_code = _grant()
    del no_code["status"]["code"]
    assert _refusal(no_code, CODE.encode()).reason == "No such claim"
    no_expiry = _grant()
    del no_expiry["status"]["expirationTime"]
    assert _refusal(no_expiry, CODE.encode()).reason == "No such claim"


def test_failing_issue_leaves_redemptions_unchanged() -> None:
    """A failure after the checks must not burn a use (weakness 2)."""
    grant = _grant(made=1, allowed=3)
    before = copy.deepcopy(grant)
    with pytest.raises(RuntimeError):
        decide(grant, CODE.encode(), NOW, _Issuer(fail=True))
    assert grant["status"]["redemptions"] == 1
    assert grant == before


# --- a property: decide agrees with a four-line model ------------------------------------


def _model(made: int, allowed: int, expired: bool, right_code: bool) -> tuple[int, str] | None:
    if not right_code:
        return (403, "Redemption of access token refused")
    if expired:
        return (404, "No such claim: the grant expired at")
    if made >= allowed:
        return (404, "No such access granted")
    return None


@given(
    made=st.integers(min_value=0, max_value=20),
    allowed=st.integers(min_value=1, max_value=20),
    expires_in=st.integers(min_value=-86400, max_value=86400).filter(lambda s: s != 0),
    presented=st.one_of(
        st.just(CODE),
        st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
                min_size=0, max_size=30),
    ),
    issue_fails=st.booleans(),
)
def test_decide_matches_model(
    made: int, allowed: int, expires_in: int, presented: str, issue_fails: bool
) -> None:
    grant = _grant(made=made, allowed=allowed, expires_in=expires_in)
    issue = _Issuer(fail=issue_fails)
    expected = _model(made, allowed, expires_in < 0, presented == CODE)
    if expected is not None:
        with pytest.raises(Refusal) as excinfo:
            decide(grant, presented.encode(), NOW, issue)
        status, reason = excinfo.value.status, excinfo.value.reason
        assert status == expected[0] and reason.startswith(expected[1])
        assert issue.calls == 0
        assert grant["status"]["redemptions"] == made
    elif issue_fails:
        with pytest.raises(RuntimeError):
            decide(grant, presented.encode(), NOW, issue)
        assert grant["status"]["redemptions"] == made
    else:
        assert decide(grant, presented.encode(), NOW, issue) is CREDENTIAL
        assert issue.calls == 1
        assert grant["status"]["redemptions"] == made + 1


# --- check_request ------------------------------------------------------------------------


def _request(**changes: Any) -> RedemptionRequest:
    fields: dict[str, Any] = {
        "grant_id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
        "code": CODE.encode(),
        "name": "west-1b4e28ba-2fa1-11d2-883f-0016d3cca427",
        "subject": "east",
    }
    fields.update(changes)
    return RedemptionRequest(**fields)


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"subject": "0b8e6a2c-5a3f-4d3e-9c3b-2f6a3c1d9e7f"},
        {"subject": "a" * 63},
        {"subject": "east-1"},
        {"name": "a" * 63},
        # Secret and Link names are DNS-1123 subdomains: a long site's grant name fits.
        {"name": "west-with-a-rather-long-site-name-ok-0b8e6a2c-5a3f-4d3e-9c3b-2f6a3c1d9e7f"},
        {"name": "a" * 253},
        {"name": "link.example"},
    ],
)
def test_check_request_accepts(changes: dict[str, Any]) -> None:
    check_request(_request(**changes))


@pytest.mark.parametrize(
    ("changes", "what"),
    [
        ({"code": b""}, "Request body not valid"),
        ({"name": ""}, "name"),
        ({"name": "Upper"}, "name"),
        ({"name": "../etc"}, "name"),
        ({"name": "a" * 254}, "name"),
        ({"name": "bad\nname"}, "name"),
        ({"subject": ""}, "subject"),
        ({"subject": "../etc"}, "subject"),
        ({"subject": "a" * 64}, "subject"),
        ({"subject": "a" * 100}, "subject"),
        ({"subject": "east\r\nX-Evil: 1"}, "subject"),
        ({"subject": "CN=east,O=evil"}, "subject"),
        ({"subject": "-east"}, "subject"),
    ],
)
def test_check_request_refuses_with_400(changes: dict[str, Any], what: str) -> None:
    with pytest.raises(Refusal) as excinfo:
        check_request(_request(**changes))
    assert excinfo.value.status == 400
    assert what in excinfo.value.reason


@pytest.mark.parametrize(
    "subject",
    [
        "{0b8e6a2c-5a3f-4d3e-9c3b-2f6a3c1d9e7f}",
        "urn:uuid:0b8e6a2c-5a3f-4d3e-9c3b-2f6a3c1d9e7f",
        "0-1-2-3-4-5-6-7-8-9-a-b-c-d-e-f-0-1-2-3-4-5-6-7-8-9-a-b-c-d-e-f" + "-" * 40,
    ],
    ids=["braces", "urn", "dashes-103-chars"],
)
def test_check_request_refuses_non_canonical_uuid_subjects(subject: str) -> None:
    """uuid.UUID() also parses these; a 103-character one once reached the CA (CN > 64)."""
    with pytest.raises(Refusal) as excinfo:
        check_request(_request(subject=subject))
    assert excinfo.value.status == 400


@pytest.mark.parametrize("changes", [{"name": "mylink\n"}, {"subject": "east\n"}],
                         ids=["name", "subject"])
def test_check_request_refuses_trailing_newline(changes: dict[str, Any]) -> None:
    """'$' in re.match also matches before a final newline; the checks must not."""
    with pytest.raises(Refusal) as excinfo:
        check_request(_request(**changes))
    assert excinfo.value.status == 400


# --- answer_documents ---------------------------------------------------------------------

ENDPOINTS = [
    {"name": "inter-router", "host": "127.0.0.1", "port": 55671, "group": "skupper-router"},
    {"name": "edge", "host": "127.0.0.1", "port": "45671", "group": "skupper-router"},
]


def test_answer_with_one_group_is_secret_then_one_link_named_name() -> None:
    docs = answer_documents("mylink", CREDENTIAL, b"SITE CA", ENDPOINTS)
    assert [d["kind"] for d in docs] == ["Secret", "Link"]
    secret, link = docs
    assert secret["apiVersion"] == "v1"
    assert secret["type"] == "kubernetes.io/tls"
    assert secret["metadata"] == {"name": "mylink"}
    decoded = {k: base64.b64decode(v) for k, v in secret["data"].items()}
    assert decoded == {"tls.crt": b"CERT", "tls.key": b"KEY", "ca.crt": b"SITE CA"}
    assert link["apiVersion"] == "skupper.io/v2alpha1"
    assert link["metadata"] == {"name": "mylink"}
    assert link["spec"]["tlsCredentials"] == "mylink"
    assert link["spec"]["endpoints"] == [
        {"name": "inter-router", "host": "127.0.0.1", "port": "55671", "group": "skupper-router"},
        {"name": "edge", "host": "127.0.0.1", "port": "45671", "group": "skupper-router"},
    ]


def test_answer_with_two_groups_names_links_name_1_and_name_2() -> None:
    endpoints = [
        {"name": "inter-router", "host": "h1", "port": 55671, "group": "router-1"},
        {"name": "edge", "host": "h1", "port": 45671, "group": "router-1"},
        {"name": "inter-router", "host": "h2", "port": 55672, "group": "router-2"},
        {"name": "edge", "host": "h2", "port": 45672, "group": "router-2"},
    ]
    docs = answer_documents("mylink", CREDENTIAL, b"SITE CA", endpoints)
    assert [d["kind"] for d in docs] == ["Secret", "Link", "Link"]
    assert docs[0]["metadata"]["name"] == "mylink"
    first, second = docs[1], docs[2]
    assert first["metadata"]["name"] == "mylink-1"
    assert second["metadata"]["name"] == "mylink-2"
    for link, host, group in ((first, "h1", "router-1"), (second, "h2", "router-2")):
        assert link["spec"]["tlsCredentials"] == "mylink"
        assert {e["host"] for e in link["spec"]["endpoints"]} == {host}
        assert {e["group"] for e in link["spec"]["endpoints"]} == {group}
        assert all(isinstance(e["port"], str) for e in link["spec"]["endpoints"])
        assert [e["name"] for e in link["spec"]["endpoints"]] == ["inter-router", "edge"]
