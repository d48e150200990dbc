"""The link hello is bound to the certificate: a hostile link client cannot pose as
another site, poison tables or logs, or flood the daemon through its hello.

The attacker here holds a real client certificate, legitimately obtained: it redeems a
token from west at west's grant server (real HTTPS) under its own name, "mallory".
Then it dials west's inter-router port (real mutual TLS 1.3, real yamux) and writes
hellos by hand. An honest site "east" is linked to west throughout, and must stay so.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http.client
import json
import os
import signal
import ssl
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from skupper.certs.tls import client_context
from skupper.router.link import LinkClosed, LinkConnection
from skupper.router.link_transport import dial_tls
from skupper.router.stream import LinkStream
from tests_support import Skupper, alive, table, wait_for

pytestmark = pytest.mark.e2e

# Never inside a line of the log or of a table (the line ends are the only LFs).
UNSAFE = ("\r", "\x1b", "\x00", "\u202e")


@dataclass(frozen=True)
class Credential:
    cert_pem: bytes
    key_pem: bytes
    ca_pem: bytes


@dataclass
class Network:
    skupper: Skupper
    east_link: str
    host: str
    port: int
    mallory: Credential

    def west_id(self) -> str:
        return str(site(self.skupper, "west")["metadata"]["uid"])

    def east_id(self) -> str:
        return str(site(self.skupper, "east")["metadata"]["uid"])

    def log(self) -> bytes:
        return (self.skupper.namespace_dir("west") / "logs" / "daemon.log").read_bytes()


def site(skupper: Skupper, ns: str) -> dict[str, Any]:
    return dict(json.loads(skupper.run("site", "status", "-n", ns, "-o", "json").stdout))


def link_status(skupper: Skupper, ns: str = "west") -> str:
    return skupper.run("link", "status", "-n", ns).stdout


def incoming(skupper: Skupper, ns: str = "west") -> list[dict[str, str]]:
    return [r for r in table(link_status(skupper, ns)) if r["DIRECTION"] == "incoming"]


def issue(skupper: Skupper, file: Path) -> dict[str, Any]:
    skupper.run("access-token", "issue", str(file), "-n", "west")
    return dict(yaml.safe_load(file.read_text()))


def redeem_by_hand(token: dict[str, Any], name: str, subject: str) -> Credential:
    """POST the code as any redeemer would (stdlib HTTPS); the certificate it answers."""
    spec = token["spec"]
    url = urlsplit(spec["url"])
    context = ssl.create_default_context(cadata=spec["ca"])
    connection = http.client.HTTPSConnection(url.hostname or "", url.port or 443,
                                             context=context, timeout=10)
    try:
        connection.request("POST", url.path, body=spec["code"].encode(),
                           headers={"name": name, "subject": subject})
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    assert response.status == 200, body
    (secret,) = [d for d in yaml.safe_load_all(body) if d and d.get("kind") == "Secret"]
    data = {k: base64.b64decode(v) for k, v in secret["data"].items()}
    return Credential(data["tls.crt"], data["tls.key"], data["ca.crt"])


@pytest.fixture
def network(skupper: Skupper, tmp_path: Path) -> Iterator[Network]:
    """west (link access) with an honest link from east, and mallory's certificate."""
    skupper.run("site", "create", "west", "-n", "west", "--enable-link-access")
    skupper.run("site", "create", "east", "-n", "east")
    file = tmp_path / "east.yaml"
    token = issue(skupper, file)
    skupper.run("access-token", "redeem", str(file), "-n", "east")
    east_link = str(token["metadata"]["name"])
    wait_for("west sees east's link", lambda: [r["REMOTE SITE"] for r in incoming(skupper)]
             == ["east"], 10)
    mallory = redeem_by_hand(issue(skupper, tmp_path / "mallory.yaml"), "mallory-link",
                             "mallory")
    endpoints = site(skupper, "west")["status"]["endpoints"]
    (endpoint,) = [e for e in endpoints if e["name"] == "inter-router"]
    yield Network(skupper, east_link, str(endpoint["host"]), int(endpoint["port"]), mallory)


async def _dial(net: Network, hello: dict[str, Any], hold: float = 0.0) -> dict[str, Any]:
    """Dial west with mallory's certificate and ``hello`` as written; west's hello back.

    Raises LinkClosed with the reason west gave. ``hold`` keeps an accepted link open.
    """
    tls = client_context(net.mallory.ca_pem, cert_pem=net.mallory.cert_pem,
                         key_pem=net.mallory.key_pem)
    async with asyncio.timeout(15):
        connection = LinkConnection(await dial_tls(net.host, net.port, tls), is_client=True,
                                    local_hello=hello, on_stream=_swallow)
        try:
            remote = await connection.start()
            await asyncio.sleep(hold)
            return remote
        finally:
            await connection.aclose("test over")


async def _swallow(stream: LinkStream) -> None:
    """Take west's control stream and read it, so west keeps the link up."""
    with contextlib.suppress(Exception):
        while await stream.read():
            pass


def dial(net: Network, hello: dict[str, Any], hold: float = 0.0) -> dict[str, Any]:
    return asyncio.run(_dial(net, hello, hold))


def refused(net: Network, hello: dict[str, Any]) -> str:
    with pytest.raises(LinkClosed) as caught:
        dial(net, hello)
    return caught.value.reason


def mallory_hello(**changes: Any) -> dict[str, Any]:
    hello = {"siteId": str(uuid.uuid4()), "siteName": "mallory", "link": "mallory-link"}
    hello.update(changes)
    return hello


def east_undisturbed(net: Network) -> None:
    rows = incoming(net.skupper)
    assert [(r["NAME"], r["REMOTE SITE"], r["STATUS"]) for r in rows] == [
        (net.east_link, "east", "Ready")], rows
    (outgoing,) = table(link_status(net.skupper, "east"))
    assert outgoing["STATUS"] == "Ready", outgoing


# --- identity ------------------------------------------------------------------------


def test_a_hello_claiming_another_sites_name_is_refused(network: Network) -> None:
    reason = refused(network, mallory_hello(siteName="east"))
    assert "names site east but the certificate was issued to site mallory" in reason, reason
    reason = refused(network, mallory_hello(siteName="east", siteId=network.east_id()))
    assert "issued to site mallory" in reason, reason
    east_undisturbed(network)
    log = network.log().decode()
    assert "refused" in log and "CN mallory" in log


def test_a_hello_claiming_another_sites_id_is_refused(network: Network) -> None:
    east_id = network.east_id()
    reason = refused(network, mallory_hello(siteId=east_id))
    assert f"site id {east_id} belongs to site east, not mallory" in reason, reason
    reason = refused(network, mallory_hello(siteId=network.west_id()))
    assert "this site's own id" in reason, reason
    east_undisturbed(network)


def test_one_certificate_speaks_for_one_site_id(network: Network) -> None:
    first = mallory_hello()
    dial(network, first)
    reason = refused(network, mallory_hello())  # the same certificate, another id
    assert "already speaks for the site with id " + first["siteId"] in reason, reason
    dial(network, first)  # the same id again is fine


@pytest.mark.parametrize("changes", [
    {"siteId": "not-a-uuid"},
    {"siteId": str(uuid.uuid4()).upper()},
    {"link": "mallory-link\r\n2026-12-01 INFO forged line"},
    {"link": "x" * 300},
    {"link": "\x1b[2J\x1b[31mred"},
    {"siteName": "mallory\u202e"},
    {"version": 10**40},
    {"version": True},
])
def test_hellos_with_unsafe_names_or_numbers_are_refused(
    network: Network, changes: dict[str, Any],
) -> None:
    before = len(network.log())
    reason = refused(network, mallory_hello(**changes))
    assert reason.startswith("the remote site refused the link: the link hello"), reason
    written = network.log()[before:].decode()
    assert written.count("\n") <= 2, written
    for char in UNSAFE:
        assert char not in written, written
    assert "forged" not in written or "\\r\\n" in written
    assert all(c not in link_status(network.skupper) for c in UNSAFE)


def test_a_5000_digit_version_is_refused_in_one_line(network: Network) -> None:
    hello = mallory_hello()
    # json.dumps cannot write it (Python's digit limit), so write the raw line.
    raw = (json.dumps({"protocol": "skupper-py-link", **hello})[:-1]
           + ', "version": ' + "9" * 5000 + "}").encode()

    async def main() -> str:
        tls = client_context(network.mallory.ca_pem, cert_pem=network.mallory.cert_pem,
                             key_pem=network.mallory.key_pem)
        connection = LinkConnection(await dial_tls(network.host, network.port, tls),
                                    is_client=True, local_hello={})
        connection._encode_hello = lambda: raw + b"\n"  # type: ignore[method-assign]
        try:
            async with asyncio.timeout(15):
                await connection.start()
        except LinkClosed as exc:
            return exc.reason
        finally:
            await connection.aclose("test over")
        return "accepted"

    reason = asyncio.run(main())
    # Over the line limit anyway (Python's own digit limit, 4300, is never reached).
    assert reason.startswith("the remote site refused the link: the link hello is "), reason
    assert "Traceback" not in network.log().decode()


def test_an_accepted_hostile_link_shows_its_certificates_identity(network: Network) -> None:
    """mallory may link (its token was real), but under its own name only: even with
    east's link name it shows as a second link, from mallory, with its certificate."""
    hello = mallory_hello(link=network.east_link)

    async def hold_and_look() -> list[dict[str, str]]:
        task = asyncio.create_task(_dial(network, hello, hold=30))
        try:
            return await asyncio.to_thread(
                wait_for, "west shows mallory's link",
                lambda: (rows if len(rows := incoming(network.skupper)) == 2 else None), 10)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    rows = asyncio.run(hold_and_look())
    by_remote = {r["REMOTE SITE"]: r for r in rows}
    assert set(by_remote) == {"east", "mallory"}, rows
    assert by_remote["mallory"]["NAME"] == by_remote["east"]["NAME"] == network.east_link
    assert "(certificate " in by_remote["mallory"]["MESSAGE"]
    assert by_remote["mallory"]["MESSAGE"] != by_remote["east"]["MESSAGE"]
    wait_for("mallory's link gone", lambda: len(incoming(network.skupper)) == 1, 10)
    east_undisturbed(network)


# --- size --------------------------------------------------------------------------------


def test_a_200_kb_hello_is_refused_every_time_and_writes_little(network: Network) -> None:
    before_log = len(network.log())
    before_status = site(network.skupper, "west")["status"]
    huge = mallory_hello(link="a" * 200_000)
    for _ in range(10):
        reason = refused(network, huge)
        assert "over 4096 bytes" in reason, reason
    huge_name = mallory_hello(siteName="m" * 200_000)
    for _ in range(5):
        assert "over 4096 bytes" in refused(network, huge_name)
    written = len(network.log()) - before_log
    assert written < 15 * 400, written  # a short line per refused connection at most
    after_status = site(network.skupper, "west")["status"]
    assert after_status["network"] == before_status["network"]
    east_undisturbed(network)


def test_a_flood_of_refused_hellos_is_rate_limited_in_the_log(network: Network) -> None:
    before = len(network.log())

    async def flood() -> None:
        for _ in range(60):
            with pytest.raises(LinkClosed):
                await _dial(network, mallory_hello(siteName="east"))

    asyncio.run(flood())
    written = network.log()[before:].decode()
    assert written.count("refused") <= 25, written.count("refused")
    east_undisturbed(network)


# --- stopping ------------------------------------------------------------------------------


def test_sigterm_with_links_open_logs_no_traceback(network: Network) -> None:
    skupper = network.skupper
    for ns in ("west", "east"):
        pid = skupper.daemon_pid(ns)
        assert pid is not None
        os.kill(pid, signal.SIGTERM)
        wait_for(f"{ns}'s daemon to exit", lambda pid=pid: not alive(pid), 10)
        log = (skupper.namespace_dir(ns) / "logs" / "daemon.log").read_text()
        assert "Traceback" not in log, log
        assert "ERROR" not in log, log


# --- tables ----------------------------------------------------------------------------------


def test_link_status_escapes_what_other_sites_wrote(skupper: Skupper) -> None:
    """Whatever a remote site got into a Link's status (an older daemon, a hand edit),
    ``link status`` shows it escaped, never as terminal control sequences."""
    from skupper.resources.model import new_resource
    from skupper.store.sqlite import SqliteStore

    skupper.run("site", "create", "east", "-n", "east")
    skupper.run("system", "stop", "-n", "east")
    hostile = "\x1b[2J\x1b[31mwest\r\nforged-row   incoming   Ready\u202e"

    async def write(store: SqliteStore) -> None:
        link = new_resource("Link", "to-west", {"endpoints": [], "cost": 1})
        await store.create(link)

        def change(resource: dict[str, Any]) -> None:
            resource.setdefault("status", {}).update(remoteSiteName=hostile, message=hostile)

        await store.mutate_status("Link", "to-west", change)

    with SqliteStore(skupper.namespace_dir("east") / "store.db") as store:
        asyncio.run(write(store))
    out = link_status(skupper, "east")
    assert len(out.strip().splitlines()) == 2, out
    for char in UNSAFE:
        assert char not in out, repr(out)
    assert "\\x1b[31mwest\\x0d\\x0aforged-row" in out, out
