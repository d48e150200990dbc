"""The link hello's parser: every field typed and bounded, nothing unchecked kept."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from skupper.router.hello import (
    MAX_HELLO_BYTES,
    HelloError,
    canonical_uuid,
    encode_hello,
    parse_hello,
)
from skupper.router.log_limit import LogLimiter

SITE_ID = "2b2b2b2b-2222-4222-8222-22222222222b"


def line(**changes: Any) -> bytes:
    hello: dict[str, Any] = {"protocol": "skupper-py-link", "version": 1, "siteId": SITE_ID,
                             "siteName": "east", "link": "east-link"}
    hello.update(changes)
    return encode_hello({k: v for k, v in hello.items() if v is not None})


def test_a_dialers_hello_keeps_only_the_checked_fields() -> None:
    hello = parse_hello(line(extra="x" * 1000, role="edge"), from_dialer=True)
    assert hello == {"protocol": "skupper-py-link", "version": 1, "siteId": SITE_ID,
                     "siteName": "east", "link": "east-link", "role": "edge"}


def test_a_listeners_hello_needs_no_link_name() -> None:
    assert "link" not in parse_hello(line(link=None), from_dialer=False)


@pytest.mark.parametrize(("changes", "why"), [
    ({"protocol": "other"}, "not for this link protocol"),
    ({"version": 2}, "protocol version 2"),
    ({"version": True}, "no valid protocol version"),
    ({"version": 10**30}, "no valid protocol version"),
    ({"version": "1"}, "no valid protocol version"),
    ({"siteId": "east"}, "site id"),
    ({"siteId": SITE_ID.upper()}, "site id"),
    ({"siteId": "{" + SITE_ID + "}"}, "site id"),
    ({"siteId": None}, "site id"),
    ({"siteName": "East"}, "site name"),
    ({"siteName": "east\r\nINFO forged"}, "site name"),
    ({"siteName": "e" * 254}, "site name"),
    ({"siteName": 7}, "site name"),
    ({"link": None}, "link name"),
    ({"link": "\x1b[2Jlink"}, "link name"),
    ({"link": ["a"]}, "link name"),
])
def test_bad_fields_are_refused_with_a_reason(changes: dict[str, Any], why: str) -> None:
    with pytest.raises(HelloError, match=why.replace("(", r"\(")):
        parse_hello(line(**changes), from_dialer=True)


def test_malformed_lines_are_refused() -> None:
    for raw in (b"{", b"[]", b'"hello"', b"\xff\xfe", b'{"version": ' + b"9" * 5000 + b"}"):
        with pytest.raises(HelloError):
            parse_hello(raw, from_dialer=True)


def test_the_whole_line_is_bounded() -> None:
    with pytest.raises(HelloError, match="over 4096 bytes"):
        parse_hello(line(pad="x" * MAX_HELLO_BYTES), from_dialer=True)


def test_a_refusal_from_the_listener_is_escaped_and_bounded() -> None:
    hello = parse_hello(line(error="no\r\n\x1b[31m" + "x" * 1000), from_dialer=False)
    assert "\r" not in hello["error"] and "\x1b" not in hello["error"]
    assert len(hello["error"]) < 400
    # A dialer cannot skip the checks by sending an error.
    with pytest.raises(HelloError):
        parse_hello(line(error="x", siteId="bad"), from_dialer=True)


def test_canonical_uuid() -> None:
    assert canonical_uuid(SITE_ID)
    assert not canonical_uuid(SITE_ID.upper())
    assert not canonical_uuid("urn:uuid:" + SITE_ID)
    assert not canonical_uuid(SITE_ID.replace("-", ""))
    assert not canonical_uuid(None)


def test_the_hello_is_compact_json() -> None:
    assert json.loads(line())["siteName"] == "east"


def test_the_log_limiter_lets_a_burst_through_then_counts(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    limiter = LogLimiter(logging.getLogger("test.limit"), burst=3, per_seconds=3.0,
                         clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="test.limit"):
        for i in range(10):
            limiter.info("line %d", i)
        assert [r.getMessage() for r in caplog.records] == ["line 0", "line 1", "line 2"]
        assert limiter.suppressed == 7
        now[0] = 1.0  # one more line's worth of time
        limiter.info("later")
    assert [r.getMessage() for r in caplog.records][3:] == [
        "(7 similar lines not logged: too many in a short time)", "later"]
