"""Grants you can trust, end to end: exact under load, revocable, auditable, hard to abuse.

Real ``skupper`` commands and real site daemons in hermetic data homes; redeemers are
stdlib HTTPS clients (and raw TLS sockets where a client must misbehave). Every wait
polls against a deadline; only 127.0.0.1 is ever dialed.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import dataclasses
import http.client
import ipaddress
import json
import re
import select
import socket
import ssl
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from skupper.certs.issue import generate_ca, issue_certificate
from skupper.certs.tls import client_context
from skupper.router.dialer import Dialer, DialTarget, LinkReport
from skupper.store.interface import Conflict
from skupper.store.sqlite import SqliteStore
from tests_support import Skupper, free_port, hermetic_env, kill9, table, wait_for

pytestmark = pytest.mark.e2e


REFUSED = "Redemption of access token refused"
USED_UP = "No such access granted"
NO_CLAIM = "No such claim"
BAD_SUBJECT = "Header 'subject' must be a DNS-1123 name or a UUID"
WRONG_CODE = "refused: wrong code"


# --- helpers (small copies from test_links.py and test_upstream_redeem.py) -----------------










@dataclass(frozen=True)
class Token:
    grant: str
    url: str
    code: str
    ca: str

    @property
    def port(self) -> int:
        return int(urlsplit(self.url).port or 443)

    @property
    def path(self) -> str:
        return urlsplit(self.url).path


def issue(skupper: Skupper, folder: Path, *extra: str, ns: str = "default",
          env: dict[str, str] | None = None) -> Token:
    """Issue a token at ``ns`` through the CLI and read it back."""
    path = folder / f"token-{uuid.uuid4().hex[:8]}.yaml"
    saved = skupper.env
    skupper.env = {**saved, **(env or {})}
    try:
        skupper.run("access-token", "issue", str(path), "-n", ns, *extra)
    finally:
        skupper.env = saved
    doc = yaml.safe_load(path.read_text())
    spec = doc["spec"]
    return Token(doc["metadata"]["name"], spec["url"], spec["code"], spec["ca"])


def tls_to(token: Token) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=token.ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return ctx


def post(token: Token, *, code: str | bytes | None = None, name: str = "east-link",
         subject: str = "east", timeout: float = 10, source: str = "127.0.0.1",
         ) -> tuple[int, str]:
    """One redemption as upstream sends it, on a new TLS 1.3 connection from ``source`` (a
    loopback address): (status, body)."""
    conn = http.client.HTTPSConnection("127.0.0.1", token.port, context=tls_to(token),
                                       timeout=timeout, source_address=(source, 0))
    body = token.code.encode() if code is None else code
    try:
        conn.request("POST", token.path, body=body, headers={"name": name, "subject": subject})
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def attempt(token: Token, **kwargs: Any) -> tuple[int, str]:
    """post(), with any failure to talk recorded as status -1."""
    try:
        return post(token, **kwargs)
    except Exception as exc:  # recorded, so the assertion shows it
        return -1, repr(exc)


def certificate(body: str) -> x509.Certificate:
    secret = next(yaml.safe_load_all(body))
    return x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))


def credential(body: str) -> dict[str, bytes]:
    secret = next(yaml.safe_load_all(body))
    return {k: base64.b64decode(v) for k, v in secret["data"].items()}


def grant_json(skupper: Skupper, grant: str, ns: str = "default") -> dict[str, Any]:
    done = skupper.run("access-grant", "status", grant, "-n", ns, "-o", "json")
    return dict(json.loads(done.stdout))


def grant_names(skupper: Skupper, ns: str = "default") -> set[str]:
    done = skupper.run("access-grant", "status", "-n", ns, "-o", "json")
    return {g["metadata"]["name"] for g in json.loads(done.stdout)["items"]}


def count(skupper: Skupper, grant: str, ns: str = "default") -> int:
    return int(grant_json(skupper, grant, ns)["status"].get("redemptions", 0))


def ledger(skupper: Skupper, grant: str, ns: str = "default") -> list[dict[str, Any]]:
    return list(grant_json(skupper, grant, ns)["status"].get("ledger") or [])


def usable(grant: dict[str, Any]) -> dict[str, Any]:
    conditions = {c["type"]: c for c in grant["status"].get("conditions") or []}
    return dict(conditions["Usable"])


def daemon_log(skupper: Skupper, ns: str = "default") -> str:
    return (skupper.namespace_dir(ns) / "logs" / "daemon.log").read_text(errors="replace")


def set_site_setting(skupper: Skupper, key: str, value: str, ns: str = "default") -> None:
    """Edit the Site's spec.settings through the store, as a controller would."""

    async def change() -> None:
        store = SqliteStore(skupper.namespace_dir(ns) / "store.db")
        try:
            for _ in range(20):
                (site,) = await store.list("Site")
                site["spec"].setdefault("settings", {})[key] = value
                try:
                    await store.update(site)
                    return
                except Conflict:
                    continue
            raise AssertionError("the Site kept changing under the test")
        finally:
            store.close()

    asyncio.run(change())


def link_state(skupper: Skupper, link: str, ns: str = "east") -> tuple[str, str]:
    """STATUS and MESSAGE of one link, as ``link status`` shows it."""
    for row in table(skupper.run("link", "status", "-n", ns).stdout):
        if row["NAME"] == link:
            return row["STATUS"], row["MESSAGE"]
    raise AssertionError(f"no link {link} at {ns}")


def incoming(skupper: Skupper, ns: str = "west") -> set[str]:
    return {r["NAME"] for r in table(skupper.run("link", "status", "-n", ns).stdout)
            if r["DIRECTION"] == "incoming" and r["STATUS"] == "Ready"}


def stored_link(skupper: Skupper, link: str, ns: str = "east") -> dict[str, Any]:
    """The Link straight from the site's store: a few ms, for timing assertions."""

    async def get() -> dict[str, Any]:
        store = SqliteStore(skupper.namespace_dir(ns) / "store.db")
        try:
            return await store.get("Link", link)
        finally:
            store.close()

    return asyncio.run(get())


def inter_router(skupper: Skupper, ns: str = "west") -> int:
    site = json.loads(skupper.run("site", "status", "-n", ns, "-o", "json").stdout)
    (endpoint,) = [e for e in site["status"]["endpoints"] if e["name"] == "inter-router"]
    return int(endpoint["port"])


def dial(port: int, secret: dict[str, bytes], timeout: float = 8) -> LinkReport:
    """Dial west's link port with a credential as a site would; the first final report,
    or the first operational one."""
    reports: list[LinkReport] = []

    async def run() -> None:
        tls = client_context(secret["ca.crt"], cert_pem=secret["tls.crt"],
                             key_pem=secret["tls.key"])
        done = asyncio.Event()

        def report(_name: str, outcome: LinkReport) -> None:
            reports.append(outcome)
            if outcome.final or outcome.operational:
                done.set()

        dialer = Dialer("probe", DialTarget("127.0.0.1", port, tls),
                        {"siteId": str(uuid.uuid4()), "siteName": "probe"}, report)
        task = asyncio.create_task(dialer.run())
        try:
            await asyncio.wait_for(done.wait(), timeout)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    asyncio.run(run())
    return next(r for r in reports if r.final or r.operational)


@pytest.fixture
def sites(skupper: Skupper) -> Skupper:
    """west with link access, east without (a redeeming site needs none)."""
    skupper.run("site", "create", "west", "-n", "west", "--enable-link-access")
    skupper.run("site", "create", "east", "-n", "east")
    return skupper


# --- 1. exactness under concurrency and faults ------------------------------------------------


def test_200_concurrent_redeemers_of_a_5_use_grant_get_exactly_5(
    west: Skupper, tmp_path: Path
) -> None:
    token = issue(west, tmp_path, "--redemptions-allowed", "5")
    clients = 200
    barrier = threading.Barrier(clients)

    def redeem(index: int) -> tuple[int, str]:
        barrier.wait(timeout=30)
        return attempt(token, name=f"east-{index}", subject=f"east-{index}", timeout=30)

    with ThreadPoolExecutor(max_workers=clients) as pool:
        results = list(pool.map(redeem, range(clients)))

    statuses = collections.Counter(status for status, _ in results)
    assert all(0 < s < 500 for s in statuses), [r for r in results if not 0 < r[0] < 500][:5]
    assert statuses == {200: 5, 404: 195}, statuses
    assert {body.strip() for status, body in results if status == 404} == {USED_UP}
    serials = {certificate(body).serial_number for status, body in results if status == 200}
    assert len(serials) == 5  # five distinct credentials

    grant = grant_json(west, token.grant)
    assert grant["status"]["redemptions"] == 5
    assert usable(grant)["reason"] == "RedemptionsUsed"
    # Every attempt showed the right code, so every one is accounted for in the ledger.
    entries = grant["status"]["ledger"]
    assert len(entries) + int(grant["status"].get("ledgerDropped") or 0) == clients
    kept = [e for e in entries if e["outcome"] == "redeemed"]
    assert {int(e["serial"], 16) for e in kept} <= serials


def test_a_flood_of_refused_attempts_keeps_every_redemption_in_the_ledger(
    west: Skupper, tmp_path: Path
) -> None:
    token = issue(west, tmp_path, "--redemptions-allowed", "2")
    got = [post(token, name=f"east-{i}", subject=f"east-{i}") for i in range(2)]
    assert [status for status, _ in got] == [200, 200]
    with ThreadPoolExecutor(max_workers=16) as pool:
        refusals = list(pool.map(lambda _: attempt(token), range(110)))
    assert {status for status, _ in refusals} == {404}
    serials = {format(certificate(body).serial_number, "x") for _, body in got}
    kept = {e.get("serial") for e in ledger(west, token.grant) if e["outcome"] == "redeemed"}
    assert kept == serials


def test_kill9_in_a_redemption_storm_never_loses_or_overshoots_the_count(
    west: Skupper, tmp_path: Path
) -> None:
    allowed = 50
    token = issue(west, tmp_path, "--redemptions-allowed", str(allowed))
    seen = collections.Counter[int]()
    lock = threading.Lock()

    def redeem(index: int) -> None:
        status, _ = attempt(token, name=f"storm-{index}", subject=f"storm-{index}")
        with lock:
            seen[status] += 1

    with ThreadPoolExecutor(max_workers=16) as pool:
        futures = [pool.submit(redeem, i) for i in range(200)]
        wait_for("10 redemptions to succeed", lambda: seen[200] >= 10, 30, 0.002)
        kill9(west, "default")
        for future in futures:
            future.result(timeout=60)
    successes = seen[200]
    assert successes < allowed, f"the kill came after the storm: {seen}"
    assert all(status in (200, 404, -1) for status in seen), seen
    assert seen[-1] > 0, f"no request met the dead daemon: {seen}"

    west.run("system", "start")
    grant = grant_json(west, token.grant)
    after = int(grant["status"]["redemptions"])
    assert successes <= after <= allowed, (successes, after, seen)
    # On a shared machine another site may take the port while west is down; west then
    # moves its grant server (and says so in the grant's URL). Follow it.
    token = dataclasses.replace(token, url=grant["status"]["url"])

    # What is left is exactly what the grant still allows, never more.
    rest = [post(token, name=f"rest-{i}", subject=f"rest-{i}")[0]
            for i in range(allowed - after + 3)]
    assert rest == [200] * (allowed - after) + [404] * 3
    assert count(west, token.grant) == allowed


def test_a_client_gone_before_its_answer_uses_up_nothing(west: Skupper, tmp_path: Path) -> None:
    token = issue(west, tmp_path, "--redemptions-allowed", "1")
    request = (f"POST {token.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nname: gone\r\n"
               f"subject: gone\r\nContent-Length: {len(token.code)}\r\n\r\n{token.code}")
    with socket.create_connection(("127.0.0.1", token.port), timeout=5) as raw:
        tls = tls_to(token).wrap_socket(raw, server_hostname="127.0.0.1")
        tls.sendall(request.encode())
        tls.close()  # before reading a byte

    def gone() -> dict[str, Any] | None:
        entries = ledger(west, token.grant)
        return entries[-1] if entries and entries[-1]["outcome"] == "client-gone" else None

    entry = wait_for("the ledger to record the client as gone", gone, 5, 0.1)
    assert (entry["name"], entry["subject"], entry["remote"]) == ("gone", "gone", "127.0.0.1")
    assert count(west, token.grant) == 0
    detail = west.run("access-grant", "status", token.grant).stdout
    assert "client-gone" in detail
    # The redemption was given back: the one allowed use is still there.
    status, body = post(token)
    assert status == 200, body
    assert count(west, token.grant) == 1
    assert format(certificate(body).serial_number, "x") != entry["serial"]


# --- 2. the ledger ----------------------------------------------------------------------------


def test_the_ledger_records_each_attempt(
    west: Skupper, tmp_path: Path
) -> None:
    token = issue(west, tmp_path, "--redemptions-allowed", "2")
    other = issue(west, tmp_path)
    client_id = str(uuid.uuid4())
    before = datetime.now(UTC).replace(microsecond=0)
    first = post(token, name="east-link", subject="east")
    assert post(token, code="W" * 24, name="west-link")[0] == 403  # recorded too
    second = post(token, name="north-link", subject=client_id)
    third = post(token, name="south-link", subject="south")
    after = datetime.now(UTC)
    assert [first[0], second[0], third[0]] == [200, 200, 404]

    grant = grant_json(west, token.grant)
    entries = grant["status"]["ledger"]
    assert [(e["name"], e["subject"], e["outcome"]) for e in entries] == [
        ("east-link", "east", "redeemed"),
        ("west-link", "east", WRONG_CODE),
        ("north-link", client_id, "redeemed"),
        ("south-link", "south", "refused: used up"),
    ]
    for entry in entries:
        assert entry["remote"] == "127.0.0.1"
        when = datetime.fromisoformat(entry["time"].replace("Z", "+00:00"))
        assert before - timedelta(seconds=1) <= when <= after + timedelta(seconds=1)
    assert entries[0]["serial"] == format(certificate(first[1]).serial_number, "x")
    assert entries[2]["serial"] == format(certificate(second[1]).serial_number, "x")
    assert "serial" not in entries[1] and "serial" not in entries[3]
    assert grant["status"]["wrongCodes"] == 1

    # `access-grant status <name>`: the detail and the ledger table.
    detail = west.run("access-grant", "status", token.grant).stdout
    assert re.search(r"^Redemptions:\s+2/2$", detail, re.M), detail
    assert re.search(r"^Wrong codes:\s+1$", detail, re.M), detail
    assert token.code not in detail
    rows = table(detail[detail.index("TIME"):])
    assert [(r["NAME"], r["SUBJECT"], r["OUTCOME"], r["SERIAL"], r["REMOTE"]) for r in rows] == [
        (e["name"], e["subject"], e["outcome"], e.get("serial", "-"), "127.0.0.1")
        for e in entries
    ]
    # The table of all grants shows the counts.
    counts = {r["NAME"]: r["REDEMPTIONS"]
              for r in table(west.run("access-grant", "status").stdout)}
    assert counts == {token.grant: "2/2", other.grant: "0/1"}
    untouched = west.run("access-grant", "status", other.grant).stdout
    assert "no redemption has been attempted" in untouched


# --- 3. revocation ------------------------------------------------------------------------------


def test_revoke_closes_links_refuses_the_certificate_and_survives_restarts(
    sites: Skupper, tmp_path: Path
) -> None:
    skupper = sites
    token = issue(skupper, tmp_path, "--redemptions-allowed", "2", ns="west")
    keep = issue(skupper, tmp_path, ns="west")
    for t in (token, keep):
        file = tmp_path / f"{t.grant}.yaml"
        file.write_text(yaml.safe_dump({
            "apiVersion": "skupper.io/v2alpha1", "kind": "AccessToken",
            "metadata": {"name": t.grant},
            "spec": {"ca": t.ca, "code": t.code, "url": t.url}}))
        skupper.run("access-token", "redeem", str(file), "-n", "east")
    wait_for("west to see both links", lambda: incoming(skupper) == {token.grant, keep.grant}, 5)

    # Secrets hygiene: after redeeming, east keeps no copy of either code.
    for path in skupper.namespace_dir("east").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert token.code.encode() not in data and keep.code.encode() not in data, path

    port = inter_router(skupper)
    secret_dir = skupper.namespace_dir("east") / "secrets" / token.grant
    secret = {name: (secret_dir / name).read_bytes() for name in ("tls.crt", "tls.key", "ca.crt")}
    done = skupper.run("access-grant", "revoke", token.grant, "-n", "west")
    revoked_at = time.monotonic()
    assert f'Grant "{token.grant}" is revoked' in done.stdout, done.stdout

    # east: not operational, saying why, within a second of the command returning.
    def revoked_at_east() -> dict[str, Any] | None:
        status = stored_link(skupper, token.grant).get("status") or {}
        return status if "revoked" in str(status.get("message")) else None

    status = wait_for("east's link to say it was revoked", revoked_at_east, 1.0, 0.01)
    assert time.monotonic() - revoked_at <= 1.0
    assert status["status"] != "Ready"
    state, message = link_state(skupper, token.grant)
    assert state == "Error" and "revoked" in message, (state, message)
    # west: the incoming link is gone; the other grant's link is untouched.
    wait_for("west to drop the revoked link", lambda: incoming(skupper) == {keep.grant}, 1.0)
    assert link_state(skupper, keep.grant)[0] == "Ready"
    # The grant redeems no more.
    assert post(token, name="late", subject="late") == (404, NO_CLAIM + "\n")

    # The certificate itself is refused at west's link port, with the reason.
    report = dial(port, secret)
    assert not report.operational and report.final, report
    assert "revoked" in report.message

    # Both sites restart: the revocation holds, east does not take the link back up.
    for ns in ("east", "west"):
        skupper.run("system", "stop", "-n", ns)
    for ns in ("west", "east"):
        skupper.run("system", "start", "-n", ns)
    wait_for("the other link to come back", lambda: link_state(skupper, keep.grant)[0]
             == "Ready", 10)
    wait_for("east's link to say it was revoked again",
             lambda: "revoked" in link_state(skupper, token.grant)[1], 10)
    assert token.grant not in incoming(skupper)
    report = dial(port, secret)
    assert not report.operational and report.final, report

    # No redial storm: a revoked link is dialed once per start of east, then never again.
    def refusals() -> int:
        return sum(1 for line in daemon_log(skupper, "west").splitlines()
                   if token.grant in line and "refused" in line)

    settled = refusals()
    time.sleep(2.5)  # longer than the dialer's whole backoff cap
    assert refusals() == settled
    assert 1 <= settled <= 3, daemon_log(skupper, "west")[-3000:]
    state, message = link_state(skupper, token.grant)
    assert state == "Error" and "revoked" in message


def test_delete_stops_redemptions_at_once(west: Skupper, tmp_path: Path) -> None:
    token = issue(west, tmp_path, "--redemptions-allowed", "1000")
    assert post(token)[0] == 200
    stop = threading.Event()
    outcomes: list[tuple[float, float, int]] = []  # started, finished, status
    lock = threading.Lock()

    def storm() -> None:
        while not stop.is_set():
            started = time.monotonic()
            status, _ = attempt(token, name="storm", subject="storm")
            with lock:
                outcomes.append((started, time.monotonic(), status))

    threads = [threading.Thread(target=storm) for _ in range(6)]
    for thread in threads:
        thread.start()
    try:
        wait_for("the storm to get going", lambda: len(outcomes) >= 10, 10, 0.01)
        done = west.run("access-grant", "delete", token.grant)
        deleted = time.monotonic()
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert f'Grant "{token.grant}" is deleted.' in done.stdout
    later = [status for started, _, status in outcomes if started > deleted]
    assert later and set(later) == {404}, collections.Counter(later)
    assert {s for *_, s in outcomes} <= {200, 404}
    assert post(token) == (404, NO_CLAIM + "\n")
    assert token.grant not in grant_names(west)


# --- 4. honest status and retention --------------------------------------------------------------


def test_expired_used_up_and_revoked_grants_say_so_wrong_codes_do_not(
    west: Skupper, tmp_path: Path
) -> None:
    expired = issue(west, tmp_path, "--expiration-period", "2s",
                    env={"SKUPPER_TEST_MIN_EXPIRATION": "1"})
    used = issue(west, tmp_path)
    revoked = issue(west, tmp_path)
    guessed = issue(west, tmp_path)
    ready = issue(west, tmp_path)
    assert post(used)[0] == 200
    west.run("access-grant", "revoke", revoked.grant)
    for _ in range(12):  # more than the old lock's ten, from one source
        assert post(guessed, code="W" * 24, source="127.0.0.9")[0] in (403, 429)
    wait_for("the grant to expire",
             lambda: usable(grant_json(west, expired.grant))["reason"] == "Expired", 8, 0.2)

    expected = {expired.grant: ("Expired", "expired"), used.grant: ("RedemptionsUsed", "used"),
                revoked.grant: ("Revoked", "revoked")}
    items = json.loads(west.run("access-grant", "status", "-o", "json").stdout)["items"]
    by_name = {g["metadata"]["name"]: g for g in items}
    for name, (reason, word) in expected.items():
        grant = by_name[name]
        assert grant["status"]["status"] != "Ready", grant["status"]
        condition = usable(grant)
        assert (condition["status"], condition["reason"]) == ("False", reason), condition
        assert word in condition["message"].lower(), condition
        assert word in grant["status"]["message"].lower(), grant["status"]
    for name in (ready.grant, guessed.grant):
        assert by_name[name]["status"]["status"] == "Ready", by_name[name]["status"]
    wait_for("the wrong codes to be counted", lambda: grant_json(
        west, guessed.grant)["status"].get("wrongCodes") == 12, 5, 0.2)
    rows = {r["NAME"]: r for r in table(west.run("access-grant", "status").stdout)}
    for name, (_, word) in expected.items():
        assert rows[name]["STATUS"] != "Ready" and word in rows[name]["MESSAGE"].lower()
    assert rows[ready.grant]["STATUS"] == "Ready"
    assert rows[guessed.grant]["STATUS"] == "Ready"
    assert post(guessed, source="127.0.0.9")[0] == 200  # even from there: nothing locked it


def test_grants_that_cannot_be_redeemed_are_removed_after_the_retention_setting(
    sites: Skupper, tmp_path: Path
) -> None:
    skupper = sites
    used = issue(skupper, tmp_path, ns="west")
    revoked = issue(skupper, tmp_path, ns="west")
    live = issue(skupper, tmp_path, ns="west")
    assert post(used)[0] == 200
    status, body = post(revoked)
    assert status == 200
    secret = credential(body)
    skupper.run("access-grant", "revoke", revoked.grant, "-n", "west")
    time.sleep(0.5)
    # The default retention is a day: nothing has gone yet.
    assert grant_names(skupper, "west") == {used.grant, revoked.grant, live.grant}

    set_site_setting(skupper, "grant-retention", "2s", ns="west")
    started = time.monotonic()
    wait_for("the retired grants to be removed",
             lambda: grant_names(skupper, "west") == {live.grant}, 6, 0.2)
    assert time.monotonic() - started <= 6
    time.sleep(0.5)
    assert grant_names(skupper, "west") == {live.grant}
    assert post(live)[0] == 200
    # The revoked grant is gone, its certificate stays revoked.
    report = dial(inter_router(skupper), secret)
    assert not report.operational and "revoked" in report.message, report


# --- 5. abuse resistance -------------------------------------------------------------------------


def test_wrong_codes_from_anyone_do_not_lock_out_the_holder(
    sites: Skupper, tmp_path: Path
) -> None:
    """Hundreds of concurrent wrong codes, from the holder's own address and from many
    others, while the holder redeems with `skupper access-token redeem`: the holder gets
    its link within seconds, the attackers get 429s, the grant shows the wrong codes."""
    skupper = sites
    token = issue(skupper, tmp_path, "--redemptions-allowed", "2", ns="west")
    file = tmp_path / "token.yaml"
    file.write_text(yaml.safe_dump({
        "apiVersion": "skupper.io/v2alpha1", "kind": "AccessToken",
        "metadata": {"name": token.grant},
        "spec": {"ca": token.ca, "code": token.code, "url": token.url}}))
    stop = threading.Event()
    seen = collections.Counter[int]()
    lock = threading.Lock()

    def attack(source: str) -> None:
        while not stop.is_set():
            status, _ = attempt(token, code="W" * 24, name="evil", subject="evil",
                                source=source)
            with lock:
                seen[status] += 1

    # The holder's own address (it dials from 127.0.0.1), and a dozen others.
    sources = ["127.0.0.1"] * 8 + [f"127.0.4.{i}" for i in range(1, 13)]
    threads = [threading.Thread(target=attack, args=(source,)) for source in sources]
    for thread in threads:
        thread.start()
    try:
        wait_for("the attack to be slowed", lambda: seen[429] >= 50, 30, 0.05)
        started = time.monotonic()
        done = skupper.run("access-token", "redeem", str(file), "-n", "east")
        took = time.monotonic() - started
        during = sum(seen.values())
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert f'Link "{token.grant}" is active.' in done.stdout, done.stdout
    assert took < 10, f"the holder waited {took:.1f} s"
    assert during >= 100, seen  # hundreds of wrong codes were sent meanwhile
    assert set(seen) <= {403, 429}, seen
    assert seen[403] >= 10 and seen[429] > seen[403], seen

    grant = grant_json(skupper, token.grant, "west")
    assert grant["status"]["redemptions"] == 1
    assert grant["status"]["status"] == "Ready"
    entries = grant["status"]["ledger"]
    assert [e["outcome"] for e in entries].count("redeemed") == 1
    assert any(e["outcome"] == WRONG_CODE and e["name"] == "evil" for e in entries)
    # Every wrong code is counted: one by one while the grant's budget lasts, then
    # in bulk (written about once a second).
    wait_for("every wrong code to be counted", lambda: int(grant_json(
        skupper, token.grant, "west")["status"].get("rateLimited") or 0) == seen[429], 5, 0.2)
    status = grant_json(skupper, token.grant, "west")["status"]
    assert int(status["wrongCodes"]) >= seen[403]
    detail = skupper.run("access-grant", "status", token.grant, "-n", "west").stdout
    assert re.search(r"^Wrong codes:\s+\d+$", detail, re.M), detail
    assert "locked" not in detail.lower()
    assert WRONG_CODE in detail


_RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def _raw_exchange(port: int, data: bytes, context: ssl.SSLContext | None) -> None:
    """Send ``data`` (over TLS with ``context``, else plain TCP); read until closed."""
    with contextlib.ExitStack() as stack:
        sock = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=5))
        if context is not None:
            sock = stack.enter_context(context.wrap_socket(sock, server_hostname="127.0.0.1"))
        with contextlib.suppress(OSError):
            sock.sendall(data)
            while sock.recv(65536):
                pass


def test_hostile_requests_cost_one_short_escaped_log_line_at_most(
    west: Skupper, tmp_path: Path
) -> None:
    token = issue(west, tmp_path)
    tls = tls_to(token)
    tail = b"Connection: close\r\nContent-Length: 24\r\n\r\n" + b"W" * 24
    requests: list[tuple[bytes, ssl.SSLContext | None]] = [
        # The grant id from the path, with CR, LF, ESC and C1 controls percent-encoded.
        (b"POST /%0d%0aINFO%20redeemed:%20grant=x%1b[31m HTTP/1.1\r\nHost: x\r\n"
         b"name: east\r\nsubject: east\r\n" + tail, tls),
        (b"POST /%1b]0;owned%07%0dFAKE%c2%85%c2%9b31m HTTP/1.1\r\nHost: x\r\n"
         b"name: east\r\nsubject: east\r\n" + tail, tls),
        # Escape characters in the name and subject headers.
        ((f"POST {token.path} HTTP/1.1\r\nHost: x\r\nname: a\x9b2J\r\n"
          "subject: b\x85\x1b[2Jc\r\n").encode("latin-1") + tail, tls),
        ((f"POST {token.path} HTTP/1.1\r\nHost: x\r\nname: east\x1b\r\n"
          "subject: east\r\n").encode() + tail, tls),
        # Numbers out of range, bad HTTP, garbage, and no TLS at all.
        (b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n", tls),
        (b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n", tls),
        (f"POST {token.path} HTTP/1.1\r\nHost: x\r\nname: east\r\nsubject: east\r\n"
         f"Content-Length: {10**15}\r\n\r\n".encode(), tls),
        (bytes(range(256)) * 8, tls),
        (b"\x1b[31mPOST\r\n / HTTP/1.1\r\n\r\n", tls),
        (b"POST / HTTP/1.1\r\nHost: x\r\n\r\n", None),
        (b"\x16\x03\x01\x00\x05hello" + bytes(range(256)), None),
    ]
    log_file = west.namespace_dir() / "logs" / "daemon.log"
    before = log_file.read_bytes()
    for data, context in requests:
        _raw_exchange(token.port, data, context)
    assert post(token)[0] == 200  # the server still serves, and says so in one line

    def written() -> bytes | None:
        text = log_file.read_bytes()[len(before):]
        return text if b"redeemed: " in text else None

    added = wait_for("the redemption's log line", written, 5, 0.1).decode("utf-8", "replace")
    lines = added.splitlines()
    # One line per request at most (some cost none), plus the redemption's.
    assert len(lines) <= len(requests) + 1, added
    assert "Traceback" not in added, added
    for line in lines:
        assert not _RAW_CONTROL.search(line), repr(line)
        assert not line.startswith((" ", "\t")), added  # no continuation lines
        assert len(line) < 600, line
    assert not any("FAKE" in line and "\r" in line for line in lines)
    assert count(west, token.grant) == 1


def _trickle(sockets: list[ssl.SSLSocket], stop: threading.Event, lock: threading.Lock) -> None:
    while not stop.wait(0.3):
        with lock:  # an SSL object is not used from two threads at once
            for sock in sockets:
                with contextlib.suppress(OSError):
                    sock.send(b"a")


def _closed(sock: socket.socket) -> bool:
    """True once the server has closed (or reset) the connection."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        sock.setblocking(False)
        return sock.recv(4096) == b""  # data (an error page) is not a close yet
    except (ssl.SSLWantReadError, BlockingIOError):
        return False
    except (OSError, ssl.SSLError):
        return True


def test_idle_and_trickling_connections_do_not_stop_a_real_redeemer(
    west: Skupper, tmp_path: Path
) -> None:
    token = issue(west, tmp_path, "--redemptions-allowed", "2")
    opened = time.monotonic()
    tcp_only: list[socket.socket] = []
    tls_idle: list[ssl.SSLSocket] = []
    trickling: list[ssl.SSLSocket] = []
    stop = threading.Event()
    lock = threading.Lock()
    trickler = threading.Thread(target=_trickle, args=(trickling, stop, lock))
    try:
        for _ in range(40):  # never start TLS
            tcp_only.append(socket.create_connection(("127.0.0.1", token.port), timeout=5))
        for _ in range(30):  # finish TLS, then say nothing
            raw = socket.create_connection(("127.0.0.1", token.port), timeout=5)
            tls_idle.append(tls_to(token).wrap_socket(raw, server_hostname="127.0.0.1"))
        for _ in range(30):  # finish TLS, start a request, never finish it
            raw = socket.create_connection(("127.0.0.1", token.port), timeout=5)
            tls = tls_to(token).wrap_socket(raw, server_hostname="127.0.0.1")
            tls.sendall(f"POST {token.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nx-slow: ".encode())
            trickling.append(tls)
        trickler.start()

        started = time.monotonic()
        status, body = post(token)
        assert status == 200, body
        assert time.monotonic() - started < 2.0
        assert count(west, token.grant) == 1

        # Every one of them is cut: no TLS within 5 s, no whole request within 10 s.
        everyone: list[socket.socket] = [*tcp_only, *tls_idle, *trickling]

        def all_closed() -> bool:
            with lock:
                return all(_closed(s) for s in everyone)

        wait_for("the server to close every slow connection", all_closed, 15, 0.2)
        assert time.monotonic() - opened < 15
        assert post(token)[0] == 200  # and it still serves
    finally:
        stop.set()
        if trickler.is_alive():
            trickler.join(timeout=5)
        for sock in [*tcp_only, *tls_idle, *trickling]:
            sock.close()


def test_the_certificate_cn_comes_from_a_valid_subject_only(
    west: Skupper, tmp_path: Path
) -> None:
    token = issue(west, tmp_path, "--redemptions-allowed", "20")
    good = ["east", "east-2", "0", "a" * 63, str(uuid.uuid4()), str(uuid.uuid4()).upper()]
    bad = ["", "East", "-east", "east-", "east_2", "a" * 64, "../etc", "east/west",
           "east,O=evil", "CN=east", "east west", "ést", "east\tx",
           "{" + str(uuid.uuid4()) + "}", "urn:uuid:" + str(uuid.uuid4()),
           "-".join("0123456789abcdef0123456789abcdef") + "-" * 40]
    for subject in bad:
        status, body = post(token, subject=subject)
        assert (status, body.strip()) == (400, BAD_SUBJECT), subject
    grant = grant_json(west, token.grant)
    assert grant["status"]["redemptions"] == 0
    assert not grant["status"].get("ledger")
    assert not grant["status"].get("wrongCodes")
    for subject in good:
        status, body = post(token, subject=subject)
        assert status == 200, (subject, body)
        names = certificate(body).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        assert [n.value for n in names] == [subject]
    assert count(west, token.grant) == len(good)


def test_the_code_is_never_logged(skupper: Skupper, tmp_path: Path) -> None:
    skupper.env["SKUPPER_LOG_LEVEL"] = "DEBUG"
    skupper.run("site", "create", "west", "--enable-link-access")
    token = issue(skupper, tmp_path, "--redemptions-allowed", "2")
    near_misses = [token.code[:-1] + ("A" if token.code[-1] != "A" else "B"),
                   token.code.lower() if token.code.lower() != token.code else token.code.upper(),
                   token.code + "x"]
    for code in near_misses:
        assert post(token, code=code)[0] == 403
    assert post(token)[0] == 200
    assert post(token, subject="Bad Subject")[0] == 400
    with socket.create_connection(("127.0.0.1", token.port), timeout=5) as raw:
        tls = tls_to(token).wrap_socket(raw, server_hostname="127.0.0.1")
        tls.sendall((f"POST {token.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nname: gone\r\n"
                     "subject: gone\r\n"
                     f"Content-Length: {len(token.code)}\r\n\r\n{token.code}").encode())
        tls.close()
    wait_for("the client-gone entry", lambda: any(
        e["outcome"] == "client-gone" for e in ledger(skupper, token.grant)), 5, 0.1)
    assert post(token)[0] == 200
    assert post(token)[0] == 404
    outputs = [skupper.run("access-grant", "status", *args).stdout
               for args in ([], [token.grant], ["-o", "json"], ["-o", "yaml"],
                            [token.grant, "-o", "yaml"])]
    skupper.run("access-grant", "revoke", token.grant)
    skupper.run("system", "stop")

    log = daemon_log(skupper)
    assert "DEBUG" in log and "redeemed" in log  # the log was written, verbosely
    for secret in [token.code, *near_misses]:
        assert secret not in log
        for output in outputs:
            assert secret not in output
    assert "PRIVATE KEY" not in log


# --- 6. bad token files at the CLI ---------------------------------------------------------------


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Skupper, Token, Path]]:
    """One west with a genuine token and one east that must stay untouched."""
    home = tmp_path_factory.mktemp("bad-tokens") / "home"
    home.mkdir()
    skupper = Skupper(home=home, env=hermetic_env(home))
    try:
        skupper.run("site", "create", "west", "-n", "west", "--enable-link-access")
        skupper.run("site", "create", "east", "-n", "east")
        token = issue(skupper, home.parent, ns="west")
        yield skupper, token, home.parent
    finally:
        skupper.kill_daemons()


def _genuine(token: Token, **spec: Any) -> str:
    doc = {"apiVersion": "skupper.io/v2alpha1", "kind": "AccessToken",
           "metadata": {"name": token.grant},
           "spec": {"ca": token.ca, "code": token.code, "linkCost": 1, "url": token.url}}
    for key, value in spec.items():
        if value is None:
            doc["spec"].pop(key)
        else:
            doc["spec"][key] = value
    return yaml.safe_dump(doc)


def _leaf_pem() -> str:
    return issue_certificate(generate_ca("x"), "west", usage="server").cert_pem.decode()


ALIAS_BOMB = (
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]\n"
              for i in range(8))
)

# case: (the file's content from the genuine token, a fragment of the one error line)
BAD_TOKENS: dict[str, tuple[Callable[[Token], bytes | str], str]] = {
    "empty": (lambda t: "", "it is empty"),
    "binary": (lambda t: bytes(range(256)) * 8, "it is not a text file"),
    "10 MB": (lambda t: b"#" * (10 * 1024 * 1024), "a token is a few KiB at most"),
    "alias bomb": (lambda t: ALIAS_BOMB, "YAML aliases are not allowed"),
    "wrong kind": (lambda t: _genuine(t).replace("AccessToken", "AccessGrant"),
                   "kind is 'AccessGrant'"),
    "several documents": (lambda t: _genuine(t) + "---\n" + _genuine(t), "2 YAML documents"),
    "missing code": (lambda t: _genuine(t, code=None), "spec.code is missing"),
    "url a number": (lambda t: _genuine(t, url=9090), "spec.url is missing or not a string"),
    "linkCost a word": (lambda t: _genuine(t, linkCost="one"), "spec.linkCost must be"),
    "http url": (lambda t: _genuine(t, url=t.url.replace("https", "http", 1)), "must be https"),
    "invalid certificate": (lambda t: _genuine(t, ca="-----BEGIN CERTIFICATE-----\nAAAA\n"
                                                     "-----END CERTIFICATE-----\n"),
                            "spec.ca is not a valid PEM certificate"),
    "non-CA certificate": (lambda t: _genuine(t, ca=_leaf_pem()), "not a CA certificate"),
    "closed port": (lambda t: _genuine(t, url=f"https://127.0.0.1:{free_port()}{t.path}"),
                    "nothing is listening at 127.0.0.1"),
    "server of another CA": (lambda t: _genuine(t, ca=generate_ca("other").cert_pem.decode()),
                             "does not match the token's CA"),
    # Both once printed a traceback (RecursionError, TypeError) instead of one line.
    "deeply nested": (lambda t: "[" * 3000, "nested far too deeply"),
    "non-ASCII CA": (lambda t: _genuine(t, ca=t.ca.replace("-----END", "é-----END")),
                     "spec.ca is not a PEM certificate"),
}


@pytest.mark.parametrize("case", list(BAD_TOKENS))
def test_a_bad_token_file_fails_with_one_clear_line_and_changes_nothing(
    pair: tuple[Skupper, Token, Path], tmp_path: Path, case: str
) -> None:
    skupper, token, _ = pair
    make, fragment = BAD_TOKENS[case]
    content = make(token)
    file = tmp_path / "bad.yaml"
    file.write_bytes(content.encode() if isinstance(content, str) else content)
    before = _state(skupper, token)

    done = skupper.run("access-token", "redeem", str(file), "-n", "east", check=False)
    assert done.returncode != 0
    assert done.stdout == "", done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), done.stderr[-2000:]
    assert fragment in lines[0], lines[0]
    assert _state(skupper, token) == before


def _state(skupper: Skupper, token: Token) -> tuple[Any, ...]:
    """east's Links and secrets, and the grant at west, read straight from the stores."""

    async def read() -> tuple[Any, ...]:
        east = SqliteStore(skupper.namespace_dir("east") / "store.db")
        west = SqliteStore(skupper.namespace_dir("west") / "store.db")
        try:
            links = sorted(link["metadata"]["name"] for link in await east.list("Link"))
            grant = await west.get("AccessGrant", token.grant)
            return links, grant["status"].get("redemptions"), grant["status"].get("ledger")
        finally:
            east.close()
            west.close()

    secrets = skupper.namespace_dir("east") / "secrets"
    names = sorted(p.name for p in secrets.iterdir()) if secrets.exists() else []
    return (*asyncio.run(read()), names)


def test_the_genuine_token_redeems_after_the_bad_ones(pair: tuple[Skupper, Token, Path]) -> None:
    skupper, token, folder = pair
    file = folder / "genuine.yaml"
    file.write_text(_genuine(token))
    done = skupper.run("access-token", "redeem", str(file), "-n", "east")
    assert f'Link "{token.grant}" is active.' in done.stdout
    assert count(skupper, token.grant, "west") == 1  # the bad files burnt nothing


# --- 7. secrets hygiene and certificates ---------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _peer_certificate(port: int) -> x509.Certificate:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # only to look at it
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def _assert_p256_with_only(cert: x509.Certificate, usage: x509.ObjectIdentifier) -> None:
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [usage]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_keys_certificates_and_the_link_certificate_validity_setting(
    west: Skupper, tmp_path: Path
) -> None:
    folder = tmp_path / "shared"
    folder.mkdir(mode=0o755)
    token = issue(west, folder, "--redemptions-allowed", "5")
    (file,) = folder.iterdir()
    assert _mode(file) == 0o600
    assert list(folder.iterdir()) == [file]  # written atomically: no temporary left behind

    # Server certificates: P-256, serverAuth only, the loopback address as an IP SAN.
    for port in (token.port, inter_router(west, "default")):
        cert = _peer_certificate(port)
        _assert_p256_with_only(cert, ExtendedKeyUsageOID.SERVER_AUTH)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert ipaddress.ip_address("127.0.0.1") in sans.get_values_for_type(x509.IPAddress)
        assert "127.0.0.1" not in sans.get_values_for_type(x509.DNSName)

    # Issued link certificates: P-256, clientAuth only, five years unless the site says.
    status, body = post(token)
    assert status == 200
    cert = certificate(body)
    _assert_p256_with_only(cert, ExtendedKeyUsageOID.CLIENT_AUTH)
    lifetime = cert.not_valid_after_utc - datetime.now(UTC)
    assert timedelta(days=5 * 365 - 2) < lifetime <= timedelta(days=5 * 365 + 1), lifetime

    set_site_setting(west, "link-certificate-validity", "2h")

    def short_lived() -> timedelta | None:
        # While the site applies the setting its grant server restarts: a refused
        # connection is "not yet" (see the xfail test below).
        status, body = attempt(token, subject="short")
        assert status in (200, -1), body
        if status != 200:
            return None
        left = certificate(body).not_valid_after_utc - datetime.now(UTC)
        return left if left < timedelta(days=1) else None

    lifetime = wait_for("the site to issue 2 h certificates", short_lived, 5, 0.2)
    assert timedelta(hours=2) - timedelta(minutes=1) < lifetime <= timedelta(hours=2), lifetime

    # Keys and everything secret: 0600 files in 0700 folders, nothing left half-written.
    root = west.namespace_dir()
    assert _mode(root / "secrets") == 0o700
    for path in (root / "secrets").rglob("*"):
        if path.is_dir():
            assert _mode(path) == 0o700, path
        else:
            assert _mode(path) == 0o600, path
            assert not path.name.endswith((".tmp", "~")), path
    assert _mode(root / "store.db") == 0o600
    for key in (root / "secrets").rglob("tls.key"):
        assert b"PRIVATE KEY" in key.read_bytes()


def test_changing_the_certificate_validity_keeps_established_links(
    sites: Skupper, tmp_path: Path
) -> None:
    skupper = sites
    token = issue(skupper, tmp_path, "--redemptions-allowed", "20", ns="west")
    file = tmp_path / "token.yaml"
    file.write_text(yaml.safe_dump({
        "apiVersion": "skupper.io/v2alpha1", "kind": "AccessToken",
        "metadata": {"name": token.grant},
        "spec": {"ca": token.ca, "code": token.code, "url": token.url}}))
    skupper.run("access-token", "redeem", str(file), "-n", "east")
    wait_for("west to see the link", lambda: incoming(skupper) == {token.grant}, 5)

    def accepted() -> int:
        return sum(1 for line in daemon_log(skupper, "west").splitlines()
                   if token.grant in line and "accepted" in line)

    before = accepted()
    refused: list[int] = []

    def short_lived() -> bool:
        status, body = attempt(token, subject="short")
        if status != 200:
            refused.append(status)
            return False
        return certificate(body).not_valid_after_utc - datetime.now(UTC) < timedelta(days=1)

    set_site_setting(skupper, "link-certificate-validity", "2h", ns="west")
    wait_for("west to issue 2 h certificates", short_lived, 5, 0.02)
    time.sleep(1.0)
    assert accepted() == before, "the established link was closed and redialed"
    assert refused == [], "the grant server refused connections while applying the setting"
