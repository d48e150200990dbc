"""The grant server against malformed and hostile HTTP, in-process on 127.0.0.1.

A real GrantServer (aiohttp, TLS 1.3) runs on an event loop in a background thread,
over an SqliteStore in a temp folder and certificates from skupper.certs.issue. The
clients are raw TLS sockets, so the requests can be as wrong as an attacker likes.
Whatever arrives, the server never answers 5xx unless the credential could not be made,
and a grant's count never moves without a 200 the client saw (or exceeds its limit).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import re
import socket
import ssl
import string
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skupper.certs.issue import KeyPair, generate_ca, issue_certificate
from skupper.certs.tls import server_context
from skupper.controller.grant import GrantReconciler
from skupper.controller.runtime import LinkAccessState
from skupper.grants import redemption
from skupper.grants.index import index_for
from skupper.grants.limits import (
    GRANT_BURST,
    MAX_HOLD_SECONDS,
    SOURCE_BURST,
    WrongCodeLimits,
)
from skupper.grants.redemption import Credential, RedemptionRequest, Refusal
from skupper.grants.server import (
    MAX_BODY_BYTES,
    MAX_FIELD_BYTES,
    MAX_HEADERS,
    MAX_LINE_BYTES,
    GrantServer,
    GrantServerContext,
)
from skupper.resources import new_resource
from skupper.resources.model import format_rfc3339
from skupper.store.sqlite import SqliteStore

T = TypeVar("T")
CODE = "Abcdefghijklmnopqrstuvw1"
NO_CLAIM = "No such claim"
USED_UP = "No such access granted"
REFUSED = "Redemption of access token refused"


# --- the server, in a thread ---------------------------------------------------------------


class Server:
    """The running grant server and what a test needs to drive it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, store: SqliteStore, port: int,
                 grant_ca: KeyPair, fail_issue: threading.Event,
                 context: GrantServerContext) -> None:
        self.loop = loop
        self.store = store
        self.port = port
        self.grant_ca = grant_ca
        self.context = context
        # Set to make the next credentials fail, as a broken CA would.
        self.fail_issue = fail_issue
        self._names = itertools.count()

    def __repr__(self) -> str:  # Hypothesis prints it with every failing example
        return f"Server(port={self.port})"

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 10) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def reset_limits(self, clock: Callable[[], float] = time.monotonic,
                     max_hold: float = MAX_HOLD_SECONDS) -> None:
        """Forget every source's and grant's wrong codes (each test starts afresh); with
        ``clock``, the buckets refill only as that clock moves."""

        async def reset() -> None:
            self.context.limits = WrongCodeLimits(clock=clock, max_hold=max_hold)

        self.call(reset())

    def grant(self, allowed: int = 1, code: str = CODE, expires_in: float = 600) -> Grant:
        """A grant as the reconciler leaves it: code, expiry, count 0."""
        name = f"west-grant-{next(self._names)}"

        async def create() -> dict[str, Any]:
            created = await self.store.create(
                new_resource("AccessGrant", name, {"redemptionsAllowed": allowed,
                                                   "expirationWindow": "15m"}))
            expires = datetime.now(UTC) + timedelta(seconds=expires_in)

            def status(grant: dict[str, Any]) -> None:
                grant["status"] = {"code": code, "redemptions": 0,
                                   "expirationTime": format_rfc3339(expires)}

            await self.store.mutate_status("AccessGrant", name, status)
            # As the grant reconciler does before it publishes a grant's URL.
            index_for(self.store).add(created)
            return created

        created = self.call(create())
        return Grant(self, name, str(created["metadata"]["uid"]), code)


@dataclass(repr=False)
class Grant:
    server: Server
    name: str
    uid: str
    code: str

    @property
    def path(self) -> str:
        return f"/{self.uid}"

    def __repr__(self) -> str:
        return f"Grant({self.name})"

    def status(self) -> dict[str, Any]:
        return dict(self.server.call(self.server.store.get("AccessGrant", self.name))["status"])

    @property
    def count(self) -> int:
        return int(self.status().get("redemptions") or 0)



@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("grant-server")
    grant_ca = generate_ca("grant server CA")
    grant_cert = issue_certificate(grant_ca, "127.0.0.1", usage="server", hosts=["127.0.0.1"])
    site_ca = generate_ca("site CA")
    store = SqliteStore(folder / "store.db")
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="grant-server-loop", daemon=True)
    thread.start()
    fail = threading.Event()

    def issue(subject: str, *_grant_id: str) -> Credential:
        if fail.is_set():
            raise RuntimeError("the site CA cannot be read")
        pair = issue_certificate(site_ca, subject, usage="client")
        return Credential(cert_pem=pair.cert_pem, key_pem=pair.key_pem, serial=pair.serial)

    context = GrantServerContext(
        store=store, issue=issue, site_ca_pem=lambda: site_ca.cert_pem,
        endpoints=lambda: [{"name": "inter-router", "host": "127.0.0.1", "port": "55671",
                            "group": "skupper-router"}],
    )
    grant_server = GrantServer(context)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    tls = server_context(grant_cert.cert_pem, grant_cert.key_pem)
    asyncio.run_coroutine_threadsafe(grant_server.start(sock, tls), loop).result(10)
    try:
        yield Server(loop, store, grant_server.port, grant_ca, fail, context)
    finally:
        asyncio.run_coroutine_threadsafe(grant_server.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        store.close()
        sock.close()


# --- clients -----------------------------------------------------------------------------


def _tls(server: Server) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=server.grant_ca.cert_pem.decode())
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return ctx


@pytest.fixture(autouse=True)
def fresh_limits(server: Server) -> None:
    server.reset_limits()


def exchange(server: Server, data: bytes, *, timeout: float = 5.0,
             source: str = "127.0.0.1") -> bytes:
    """Send raw bytes over a new TLS connection from ``source`` (a loopback address);
    everything the server sends until it closes."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout,
                                  source_address=(source, 0)) as raw, \
            _tls(server).wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(data)
        chunks = []
        with contextlib.suppress(ConnectionResetError, ssl.SSLError):
            while chunk := tls.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)


@dataclass(frozen=True)
class Answer:
    status: int
    version: str
    body: str


def parse(answer: bytes) -> Answer:
    """The final response (after any interim 1xx, such as 100 Continue)."""
    head, _, body = answer.partition(b"\r\n\r\n")
    version, status = head.split(b" ", 2)[:2]
    if status.startswith(b"1") and body:
        return parse(body)
    return Answer(int(status), version.decode(), body.decode("utf-8", "replace"))


def request(
    method: str = "POST", path: str = "/", body: bytes = b"", *,
    headers: list[tuple[str, str]] | None = None, version: str = "HTTP/1.1",
    content_length: bool = True,
) -> bytes:
    lines = [f"{method} {path} {version}", "Host: 127.0.0.1"]
    for key, value in headers if headers is not None else [("name", "east"),
                                                            ("subject", "east")]:
        lines.append(f"{key}: {value}")
    if content_length:
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def redeem(server: Server, grant: Grant, *, source: str = "127.0.0.1", **kwargs: Any) -> Answer:
    return parse(exchange(server, request("POST", grant.path, grant.code.encode(), **kwargs),
                          source=source))


def wait_for(what: str, probe: Callable[[], T | None], timeout: float) -> T:
    deadline = time.monotonic() + timeout
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s (last: {last!r})")
        time.sleep(0.02)


# --- methods and paths ------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE",
                                    "PROPFIND"])
def test_any_method_but_post_is_a_405_and_counts_nothing(server: Server, method: str) -> None:
    grant = server.grant()
    answer = parse(exchange(server, request(method, grant.path, grant.code.encode())))
    assert answer.status == 405, answer
    assert answer.body.strip() == "Only POST is supported"
    assert grant.count == 0
    assert redeem(server, grant).status == 200


@pytest.mark.parametrize("method", ["CONNECT", "FOO", "post", "P0ST", "POST\x00"])
def test_methods_http_does_not_know_are_4xx_and_count_nothing(
    server: Server, method: str
) -> None:
    # aiohttp's parser answers these before the handler: 400 or (CONNECT) 404.
    grant = server.grant()
    answer = parse(exchange(server, request(method, grant.path, grant.code.encode())))
    assert 400 <= answer.status < 500, answer
    assert grant.count == 0


def test_head_is_a_405_without_a_body(server: Server) -> None:
    grant = server.grant()
    answer = exchange(server, request("HEAD", grant.path, content_length=False))
    assert parse(answer).status == 405
    assert grant.count == 0


@pytest.mark.parametrize("path", ["/", "//", "/nope", f"/{uuid.uuid4()}", "/../../etc/passwd",
                                  "/%2e%2e/x", "/a/b", "/" + "a" * 1000, "*"])
def test_unknown_paths_are_404_no_such_claim(server: Server, path: str) -> None:
    grant = server.grant()
    answer = parse(exchange(server, request("POST", path, grant.code.encode())))
    assert answer.status in (400, 404), answer
    if answer.status == 404:
        assert answer.body.strip() == NO_CLAIM
    assert grant.count == 0


def test_a_path_below_the_grant_is_not_the_grant(server: Server) -> None:
    grant = server.grant()
    answer = parse(exchange(server, request("POST", grant.path + "/x", grant.code.encode())))
    assert (answer.status, answer.body.strip()) == (404, NO_CLAIM)
    assert grant.count == 0


# --- bodies --------------------------------------------------------------------------------


def test_a_body_over_the_limit_is_a_413_and_counts_nothing(server: Server) -> None:
    grant = server.grant()
    body = grant.code.encode() + b" " * (MAX_BODY_BYTES + 1 - len(grant.code))
    answer = parse(exchange(server, request("POST", grant.path, body)))
    assert answer.status == 413, answer
    assert grant.count == 0
    assert grant.status().get("ledger") is None


def test_a_body_of_exactly_the_limit_is_read(server: Server) -> None:
    grant = server.grant()
    body = grant.code.encode() + b"\n" * (MAX_BODY_BYTES - len(grant.code))
    answer = parse(exchange(server, request("POST", grant.path, body)))
    assert answer.status == 200, answer
    assert grant.count == 1


def test_a_chunked_body_over_the_limit_is_a_413(server: Server) -> None:
    grant = server.grant()
    chunk = b"A" * 1000
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(5)) + b"0\r\n\r\n"
    data = request("POST", grant.path, headers=[("name", "east"), ("subject", "east"),
                                                ("Transfer-Encoding", "chunked")],
                   content_length=False) + chunks
    answer = parse(exchange(server, data))
    assert answer.status == 413, answer
    assert grant.count == 0


def test_a_chunked_body_within_the_limit_redeems(server: Server) -> None:
    grant = server.grant()
    code = grant.code.encode()
    chunks = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (10, code[:10], len(code) - 10, code[10:])
    data = request("POST", grant.path, headers=[("name", "east"), ("subject", "east"),
                                                ("Transfer-Encoding", "chunked")],
                   content_length=False) + chunks
    assert parse(exchange(server, data)).status == 200
    assert grant.count == 1


def test_an_empty_body_is_a_400(server: Server) -> None:
    grant = server.grant()
    answer = parse(exchange(server, request("POST", grant.path, b"")))
    assert (answer.status, answer.body.strip()) == (400, "Request body not valid")
    assert grant.count == 0


# --- headers -------------------------------------------------------------------------------

_GOOD = [("name", "east"), ("subject", "east")]

MALFORMED: dict[str, bytes] = {
    "header without colon": b"POST {path} HTTP/1.1\r\nHost: x\r\nname east\r\n"
                            b"Content-Length: 24\r\n\r\n{code}",
    "space before colon": b"POST {path} HTTP/1.1\r\nHost: x\r\nname : east\r\n"
                          b"Content-Length: 24\r\n\r\n{code}",
    "control character in a name": b"POST {path} HTTP/1.1\r\nHost: x\r\nna\x01me: east\r\n"
                                   b"Content-Length: 24\r\n\r\n{code}",
    "NUL in a value": b"POST {path} HTTP/1.1\r\nHost: x\r\nname: ea\x00st\r\n"
                      b"Content-Length: 24\r\n\r\n{code}",
    "bare LF line endings": b"POST {path} HTTP/1.1\nHost: x\nname: east\nsubject: east\n"
                            b"Content-Length: 24\n\n{code}",
    "Content-Length not a number": b"POST {path} HTTP/1.1\r\nHost: x\r\nname: east\r\n"
                                   b"Content-Length: twenty\r\n\r\n{code}",
    "negative Content-Length": b"POST {path} HTTP/1.1\r\nHost: x\r\nname: east\r\n"
                               b"Content-Length: -24\r\n\r\n{code}",
    "two Content-Lengths": b"POST {path} HTTP/1.1\r\nHost: x\r\nname: east\r\n"
                           b"Content-Length: 24\r\nContent-Length: 2\r\n\r\n{code}",
    "Content-Length and chunked": b"POST {path} HTTP/1.1\r\nHost: x\r\nname: east\r\n"
                                  b"Content-Length: 24\r\nTransfer-Encoding: chunked\r\n\r\n"
                                  b"{code}",
    "unknown transfer coding": b"POST {path} HTTP/1.1\r\nHost: x\r\nname: east\r\n"
                               b"Transfer-Encoding: gzip\r\n\r\n{code}",
    "obsolete line folding": b"POST {path} HTTP/1.1\r\nHost: x\r\nname: east\r\n"
                             b" folded\r\nContent-Length: 24\r\n\r\n{code}",
    "no request target": b"POST HTTP/1.1\r\nHost: x\r\n\r\n",
    "unknown HTTP version": b"POST {path} HTTP/9.9\r\nHost: x\r\nContent-Length: 24\r\n\r\n"
                            b"{code}",
    "HTTP/2 preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "garbage": bytes(range(256)),
}


def _fill(template: bytes, grant: Grant) -> bytes:
    return template.replace(b"{path}", grant.path.encode()).replace(
        b"{code}", grant.code.encode())


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_requests_are_4xx_and_count_nothing(server: Server, case: str) -> None:
    grant = server.grant()
    answer = exchange(server, _fill(MALFORMED[case], grant))
    if answer:  # closing without a word is fine too
        status = parse(answer).status
        assert 400 <= status < 500 or status == 505, (case, answer[:200])
    assert grant.count == 0, case
    assert redeem(server, grant).status == 200  # the server still serves


def test_a_header_line_over_the_limit_is_refused(server: Server) -> None:
    grant = server.grant()
    answer = exchange(server, request("POST", grant.path, grant.code.encode(),
                                      headers=[*_GOOD, ("x-pad", "a" * (MAX_FIELD_BYTES + 1))]))
    assert 400 <= parse(answer).status < 500, answer[:200]
    assert grant.count == 0


def test_a_request_line_over_the_limit_is_refused(server: Server) -> None:
    grant = server.grant()
    path = grant.path + "?" + "a" * (MAX_LINE_BYTES + 1)
    answer = exchange(server, request("POST", path, grant.code.encode()))
    assert 400 <= parse(answer).status < 500, answer[:200]
    assert grant.count == 0


def test_too_many_headers_are_refused(server: Server) -> None:
    grant = server.grant()
    extra = [(f"x-h{i}", "v") for i in range(MAX_HEADERS + 5)]
    answer = exchange(server, request("POST", grant.path, grant.code.encode(),
                                      headers=[*_GOOD, *extra]))
    assert 400 <= parse(answer).status < 500, answer[:200]
    assert grant.count == 0


def test_many_small_headers_within_the_limits_still_redeem(server: Server) -> None:
    grant = server.grant()
    extra = [(f"x-h{i}", "v") for i in range(MAX_HEADERS - 6)]
    assert redeem(server, grant, headers=[*_GOOD, *extra]).status == 200


def test_http_1_0_redeems(server: Server) -> None:
    grant = server.grant()
    answer = redeem(server, grant, version="HTTP/1.0")
    assert answer.status == 200, answer
    assert [d["kind"] for d in yaml.safe_load_all(answer.body)][:2] == ["Secret", "Link"]
    assert grant.count == 1


def test_missing_name_or_subject_headers_are_clear_400s(server: Server) -> None:
    grant = server.grant()
    answer = redeem(server, grant, headers=[("subject", "east")])
    assert answer.status == 400 and "'name'" in answer.body, answer
    answer = redeem(server, grant, headers=[("name", "east")])
    assert answer.status == 400 and "'subject'" in answer.body, answer
    assert grant.count == 0


def test_plain_http_on_the_tls_port_gets_nothing(server: Server) -> None:
    grant = server.grant()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
        raw.sendall(request("POST", grant.path, grant.code.encode()))
        raw.settimeout(5)
        with contextlib.suppress(ConnectionResetError):
            data = raw.recv(4096)
            assert b"HTTP/1.1 200" not in data
    assert grant.count == 0


# --- failures after the count was checked ----------------------------------------------------


def test_a_credential_that_cannot_be_made_uses_up_nothing(server: Server) -> None:
    grant = server.grant(allowed=1)
    server.fail_issue.set()
    try:
        answer = redeem(server, grant)
    finally:
        server.fail_issue.clear()
    assert (answer.status, answer.body.strip()) == (503, "Internal error")
    status = grant.status()
    assert status["redemptions"] == 0
    assert not status.get("issuedCertificates")
    answer = redeem(server, grant)
    assert answer.status == 200, answer
    assert grant.count == 1


def test_a_client_gone_before_its_answer_gives_the_redemption_back(server: Server) -> None:
    grant = server.grant(allowed=1)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
        tls = _tls(server).wrap_socket(raw, server_hostname="127.0.0.1")
        tls.sendall(request("POST", grant.path, grant.code.encode(),
                            headers=[("name", "gone"), ("subject", "gone")]))
        tls.close()  # before reading a byte: FIN, no close_notify

    def gone() -> dict[str, Any] | None:
        entries = grant.status().get("ledger") or []
        return entries[-1] if entries and entries[-1]["outcome"] == "client-gone" else None

    entry = wait_for("the ledger to say client-gone", gone, 5)
    status = grant.status()
    assert status["redemptions"] == 0
    assert status["distrustedCertificates"] == [entry["serial"]]
    assert redeem(server, grant).status == 200  # the redemption was given back
    assert grant.count == 1


# --- the redemption handler under Hypothesis ---------------------------------------------------

_TOKEN_CHARS = string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~"
_VALUE_CHARS = st.characters(min_codepoint=0x20, max_codepoint=0xFF,
                             blacklist_characters="\x7f")
_HEADER_NAMES = st.one_of(
    st.sampled_from(["name", "subject", "Name", "SUBJECT", "content-type", "expect",
                     "connection", "x-forwarded-for", "cookie", "authorization"]),
    st.text(_TOKEN_CHARS, min_size=1, max_size=20),
)
_HEADERS = st.lists(
    st.tuples(_HEADER_NAMES, st.text(_VALUE_CHARS, max_size=80).map(str.strip)), max_size=8,
).filter(lambda headers: not any(_known_expect_bug(k, v) for k, v in headers))


def _known_expect_bug(key: str, value: str) -> bool:
    # A non-ASCII Expect value is a known 500 (pinned by its own xfail test below); kept
    # out of the property so that it keeps watching for other failures.
    return key.lower() == "expect" and not value.isascii()


@st.composite
def _bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["right", "padded", "near", "random"]))
    if kind == "right":
        return CODE.encode()
    if kind == "padded":
        return draw(st.sampled_from([b" ", b"\n", b"\r\n", b"\t"])) + CODE.encode() + b"\n"
    if kind == "near":
        index = draw(st.integers(0, len(CODE) - 1))
        return (CODE[:index] + draw(st.sampled_from("aZ9")) + CODE[index + 1:]).encode()
    return draw(st.binary(max_size=300))


class _Seen:
    grant: Grant | None = None
    successes = 0


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=_bodies(), headers=_HEADERS,
       subject=st.one_of(st.just("east"), st.uuids().map(str),
                         st.text(_VALUE_CHARS, max_size=70).map(str.strip)),
       name=st.one_of(st.just("east-link"), st.text(_VALUE_CHARS, max_size=70).map(str.strip)))
def test_random_requests_never_get_a_5xx_and_never_overcount(
    server: Server, body: bytes, headers: list[tuple[str, str]], subject: str, name: str
) -> None:
    allowed = 5
    if _Seen.grant is None:
        _Seen.grant = server.grant(allowed=allowed)
    grant = _Seen.grant
    server.reset_limits()  # keep every code looked at: the slowing down is tested elsewhere
    answer = parse(exchange(server, request(
        "POST", grant.path, body, headers=[("name", name), ("subject", subject), *headers])))
    assert answer.status < 500, answer
    if answer.status == 200:
        _Seen.successes += 1
        documents = list(yaml.safe_load_all(answer.body))
        assert documents[0]["kind"] == "Secret"
    count = grant.count
    assert count == _Seen.successes <= allowed
    if count == allowed and body.strip() == CODE.encode() and answer.status == 404:
        assert answer.body.strip() == USED_UP


# --- wrong codes: slowed down, recorded, never a lock ------------------------------------------


def _headers(answer: bytes) -> dict[str, str]:
    head = answer.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")[1:]
    return {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head)}


class FrozenClock:
    """Time for the wrong-code buckets that moves only when a test says."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_wrong_codes_slow_their_source_and_never_lock_out_the_holder(server: Server) -> None:
    clock = FrozenClock()
    server.reset_limits(clock)
    grant = server.grant(allowed=3)
    statuses, held = [], []
    for _ in range(SOURCE_BURST + 3):
        started = time.monotonic()
        raw = exchange(server, request("POST", grant.path, b"W" * 24))
        held.append(time.monotonic() - started)
        statuses.append(parse(raw).status)
    # The first ten are plain refusals; after that the source is slowed, told for how long,
    # and each answer is held back, so a client that does not wait is slowed all the same.
    assert statuses == [403] * SOURCE_BURST + [429] * 3, statuses
    answer = parse(raw)
    assert answer.body.strip() == "Too many wrong codes; try again in 1 s", answer
    assert _headers(raw)["retry-after"] == "1"
    assert min(held[SOURCE_BURST:]) >= MAX_HOLD_SECONDS * 0.9, held

    # The holder redeems at once, even from the attacker's own address (a NAT, a load
    # balancer, the same host): the code is compared first, and a right one is never slowed.
    for source in ("127.0.0.1", "127.0.0.2"):
        started = time.monotonic()
        assert redeem(server, grant, source=source).status == 200
        assert time.monotonic() - started < MAX_HOLD_SECONDS * 0.9

    status = grant.status()
    outcomes = [e["outcome"] for e in status["ledger"]]
    assert outcomes == ["refused: wrong code"] * SOURCE_BURST + ["redeemed"] * 2, outcomes
    assert [e["remote"] for e in status["ledger"][SOURCE_BURST:]] == ["127.0.0.1", "127.0.0.2"]
    assert status["redemptions"] == 2
    # The 429s are counted on the grant within about a second.
    wait_for("the 429s to be counted", lambda: grant.status().get("rateLimited") == 3, 5)
    assert grant.status()["wrongCodes"] == SOURCE_BURST + 3


def test_an_attacker_rotating_addresses_is_slowed_per_grant_not_the_right_code(
    server: Server
) -> None:
    server.reset_limits(FrozenClock(), max_hold=0)
    grant = server.grant(allowed=2)
    # 60 sources x 4 wrong codes each: no source is over its own budget, the grant's is.
    sources = [f"127.0.1.{i}" for i in range(1, 61)]
    statuses = collections.Counter[int]()
    for round_ in range(4):
        for source in sources:
            statuses[parse(exchange(server, request("POST", grant.path, b"W" * 24),
                                    source=source)).status] += 1
        if round_ == 1:  # in the middle of the attack, the holder
            assert redeem(server, grant, source="127.0.2.1").status == 200
    # The grant's budget: 30 recorded one by one, the rest only counted.
    assert statuses == {403: GRANT_BURST, 429: 240 - GRANT_BURST}, statuses
    assert redeem(server, grant, source="127.0.2.2").status == 200
    status = grant.status()
    assert status["redemptions"] == 2
    wait_for("every wrong code to be counted",
             lambda: grant.status().get("wrongCodes") == 240, 5)
    assert grant.status()["rateLimited"] == statuses[429]
    ledger = grant.status()["ledger"]
    assert [e["outcome"] for e in ledger].count("redeemed") == 2
    assert len(ledger) == GRANT_BURST + 2  # what was recorded, and nothing dropped yet


def test_the_ledger_keeps_redemptions_over_wrong_codes(server: Server) -> None:
    grant = server.grant(allowed=1)
    clock = FrozenClock()
    server.reset_limits(clock)
    assert redeem(server, grant, source="127.0.3.1").status == 200
    for i in range(45):  # from many sources, within the grant's budget: each one recorded
        if i == GRANT_BURST:
            clock.now += 10
        answer = parse(exchange(server, request("POST", grant.path, b"W" * 24),
                                source=f"127.0.3.{10 + i}"))
        assert answer.status == 403
    ledger = grant.status()["ledger"]
    assert len(ledger) == 32
    assert grant.status()["ledgerDropped"] == 46 - 32
    assert ledger[0]["outcome"] == "redeemed"
    assert {e["outcome"] for e in ledger[1:]} == {"refused: wrong code"}


@pytest.mark.parametrize("value", ["100-continue", "something-else"])
def test_expect_headers_are_answered_without_a_5xx(server: Server, value: str) -> None:
    grant = server.grant()
    answer = redeem(server, grant, headers=[*_GOOD, ("Expect", value)])
    assert answer.status < 500, answer
    assert grant.count == (1 if answer.status == 200 else 0)


def test_a_non_ascii_expect_header_is_not_a_server_error(server: Server) -> None:
    grant = server.grant()
    answer = redeem(server, grant, headers=[*_GOOD, ("Expect", "\x80")])
    assert answer.status < 500, answer


# --- unknown grant ids cost no more than known ones ---------------------------------------------


class CountingStore(SqliteStore):
    """A real SqliteStore that counts its listings of grants."""

    grant_listings = 0

    async def list(self, kind: str) -> list[dict[str, Any]]:
        if kind == "AccessGrant":
            self.grant_listings += 1
        return await super().list(kind)


class _LinkAccess:
    """The grant reconciler's view of link access: enabled, with a grant server URL."""

    state = LinkAccessState(grant_url_base="https://127.0.0.1:9/", grant_ca_pem=b"CA")

    async def enable(self, config: Any) -> LinkAccessState:
        return self.state

    async def disable(self) -> None:
        return None


def test_requests_for_unknown_grant_ids_never_list_the_grants(tmp_path: Path) -> None:
    site_ca = generate_ca("site CA")

    def issue(subject: str, *_grant_id: str) -> Credential:
        pair = issue_certificate(site_ca, subject, usage="client")
        return Credential(cert_pem=pair.cert_pem, key_pem=pair.key_pem, serial=pair.serial)

    async def run() -> tuple[int, int, int]:
        store = CountingStore(tmp_path / "store.db")
        try:
            reconciler = GrantReconciler(store, _LinkAccess(), lambda *_: None)
            for i in range(200):
                await store.create(new_resource("AccessGrant", f"grant-{i}", {}))
            for i in range(200):
                await reconciler.reconcile(f"grant-{i}")
            store.grant_listings = 0

            async def attempt(grant_id: str, code: bytes) -> int:
                request = RedemptionRequest(grant_id=grant_id, code=code, name="east",
                                            subject="east", remote="127.0.0.1")
                try:
                    await redemption.redeem(store, request, issue)
                except Refusal as refusal:
                    return refusal.status
                return 200

            unknown = [await attempt(str(uuid.uuid4()), b"W" * 24) for _ in range(300)]
            assert set(unknown) == {404}
            first = store.grant_listings  # the index's one listing, at most
            # A grant made after the index was filled: found through the reconciler.
            created = await store.create(new_resource("AccessGrant", "late", {}))
            await reconciler.reconcile("late")
            late = await store.get("AccessGrant", "late")
            assert created["metadata"]["uid"] == late["metadata"]["uid"]
            known = await attempt(late["metadata"]["uid"], late["status"]["code"].encode())
            assert known == 200
            # A deleted grant's id is unknown again, without a listing: the reconciler
            # forgets it when it sees the grant gone.
            await store.delete("AccessGrant", "late")
            await reconciler.reconcile("late")
            index = index_for(store)
            assert await index.name_of(store, late["metadata"]["uid"]) is None
            assert len(index) == 200
            gone = await attempt(late["metadata"]["uid"], late["status"]["code"].encode())
            assert gone == 404
            return first, store.grant_listings, len(unknown)
        finally:
            store.close()

    first, total, _ = asyncio.run(run())
    assert first <= 1, first
    assert total <= 1, total


# --- numbers in headers, and what reaches the log ---------------------------------------------


def test_a_huge_but_parseable_content_length_is_a_413_at_once(server: Server) -> None:
    grant = server.grant()
    data = (f"POST {grant.path} HTTP/1.1\r\nHost: x\r\nname: east\r\nsubject: east\r\n"
            f"Content-Length: {10**15}\r\n\r\n{grant.code}").encode()
    started = time.monotonic()
    answer = parse(exchange(server, data))
    assert answer.status == 413, answer
    assert time.monotonic() - started < 3  # not after the connection's 10 s deadline
    assert grant.count == 0


@pytest.mark.parametrize("value", ["9" * 20, "9" * 5000, "1e3", "0x18", "+24", "24 24"])
def test_content_lengths_that_are_not_numbers_in_range_are_400s(
    server: Server, value: str
) -> None:
    grant = server.grant()
    data = (f"POST {grant.path} HTTP/1.1\r\nHost: x\r\nname: east\r\nsubject: east\r\n"
            f"Content-Length: {value}\r\n\r\n{grant.code}").encode()
    answer = exchange(server, data)
    assert answer and parse(answer).status == 400, answer[:200]
    assert grant.count == 0


_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")

# Requests that a client can send to make the server log: each must cost at most one
# short line without a traceback or a raw control character.
HOSTILE: dict[str, bytes] = {
    "CR LF and ESC in the path": b"POST /%0d%0aFAKE%20redeemed:%20grant=x%1b[31m HTTP/1.1\r\n"
                                 b"Host: x\r\nname: east\r\nsubject: east\r\n"
                                 b"Connection: close\r\nContent-Length: 24\r\n\r\n"
                                 + b"W" * 24,
    "ESC, CR and NEL in the path": b"POST /%1b[31mFAKE%0d%c2%85 HTTP/1.1\r\nHost: x\r\n"
                                   b"name: east\r\nsubject: east\r\nConnection: close\r\n"
                                   b"Content-Length: 24\r\n\r\n" + b"W" * 24,
    "C1 controls in the path": "POST /\x85\x9b31m HTTP/1.1\r\nHost: x\r\nname: east\r\n"
                               "subject: east\r\nConnection: close\r\n"
                               "Content-Length: 24\r\n\r\n".encode("latin-1") + b"W" * 24,
    "ESC in a header": b"POST /x HTTP/1.1\r\nHost: x\r\nname: a\x1b[2J\r\nsubject: a\r\n"
                       b"Content-Length: 24\r\n\r\n" + b"W" * 24,
    "C1 in name and subject": "POST /{path} HTTP/1.1\r\nHost: x\r\nname: a\x9b2J\r\n"
                              "subject: b\x85c\r\nConnection: close\r\n"
                              "Content-Length: 24\r\n\r\n{code}".encode("latin-1"),
    "Content-Length overflow": b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: "
                               + b"9" * 5000 + b"\r\n\r\n",
    "garbage": bytes(range(256)) * 4,
    "bad method": b"\x1b[31mPOST\r\n / HTTP/1.1\r\n\r\n",
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_requests_log_one_short_escaped_line_at_most(
    server: Server, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    grant = server.grant()
    data = HOSTILE[case].replace(b"/{path}", grant.path.encode()).replace(
        b"{code}", grant.code.encode())
    caplog.set_level(logging.DEBUG)
    caplog.clear()
    exchange(server, data)
    time.sleep(0.2)  # the server logs on its own thread
    mine = [r for r in caplog.records if r.name.startswith(("aiohttp", "asyncio", "skupper"))]
    assert len(mine) <= 1, [r.getMessage() for r in mine]
    for record in mine:
        text = caplog.handler.format(record)
        assert record.exc_info is None and "Traceback" not in text, text
        assert not _CONTROL.search(text), repr(text)
        assert len(text) < 600, text
    assert grant.count == 0
    assert redeem(server, grant).status == 200  # and the server still serves


@pytest.mark.parametrize("ending", [b"\n", b"\r\r\n", b" \n"])
def test_a_request_aiohttp_cannot_parse_never_logs_its_body(
    server: Server, ending: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    # aiohttp quotes the unparseable request in its error, body and all.
    grant = server.grant()
    caplog.set_level(logging.DEBUG)
    caplog.clear()
    data = f"POST {grant.path} HTTP/1.1".encode() + ending + ending + grant.code.encode()
    exchange(server, data)
    time.sleep(0.2)  # the server logs on its own thread
    text = "\n".join(caplog.handler.format(record) for record in caplog.records)
    assert grant.code not in text, text
    assert grant.count == 0
