"""The control stream as an attacker writes it: real TLS 1.3, real yamux, a real
ControlPlane at the listening site ("west"), and hand-written control lines from
linked peers whose certificates west's CA signed.

Every line that breaks a rule closes the link with a reason, in one escaped log line;
a neighbour's advert is taken only from the neighbour itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

import pytest

from skupper.certs.issue import KeyPair, generate_ca, issue_certificate
from skupper.certs.tls import client_context, server_context
from skupper.router.control import ControlPlane
from skupper.router.link import LinkConnection
from skupper.router.link_transport import dial_tls
from skupper.router.listener import LinkListener
from skupper.router.routing import SiteAd
from skupper.router.stream import LinkStream

# The data plane runs on both event loops; every test here runs on each.
pytestmark = pytest.mark.usefixtures("each_event_loop")

WEST = {"siteId": "11111111-1111-4111-8111-111111111111", "siteName": "west"}
EAST = {"siteId": "22222222-2222-4222-8222-222222222222", "siteName": "east"}
NORTH = {"siteId": "33333333-3333-4333-8333-333333333333", "siteName": "north"}


@dataclass(frozen=True)
class Pki:
    ca: KeyPair
    router: KeyPair
    clients: dict[str, KeyPair]


@pytest.fixture(scope="module")
def pki() -> Pki:
    ca = generate_ca("west site CA")
    return Pki(ca, issue_certificate(ca, "west router", usage="server", hosts=["127.0.0.1"]),
               {name: issue_certificate(ca, name, usage="client") for name in ("east", "north")})


def ad_line(site: dict[str, str], seq: int, **changes: Any) -> bytes:
    ad = {"id": site["siteId"], "name": site["siteName"], "ns": "", "seq": seq,
          "links": {WEST["siteId"]: 1}, "services": {}}
    ad.update(changes)
    return json.dumps({"op": "ad", "ad": ad}).encode() + b"\n"


LINK_LINE = b'{"op": "link", "cost": 1}\n'


@dataclass
class Peer:
    """A linked peer: its side of the link, and west's."""

    client: LinkConnection
    west_side: LinkConnection
    control: asyncio.Queue[LinkStream]

    async def send(self, data: bytes) -> None:
        stream = await asyncio.wait_for(self.control.get(), 5)
        await self.control.put(stream)
        await stream.write(data)


@dataclass
class West:
    plane: ControlPlane
    pki: Pki
    port: int
    accepted: asyncio.Queue[LinkConnection]

    async def link(self, hello: dict[str, str]) -> Peer:
        control: asyncio.Queue[LinkStream] = asyncio.Queue()

        async def take_control(stream: LinkStream) -> None:
            await stream.readline(4096)  # {"t": "ctl"}
            await control.put(stream)
            with suppress(Exception):
                while await stream.read():
                    pass

        pair = self.pki.clients[hello["siteName"]]
        tls = client_context(self.pki.ca.cert_pem, cert_pem=pair.cert_pem, key_pem=pair.key_pem)
        client = LinkConnection(await dial_tls("127.0.0.1", self.port, tls), is_client=True,
                                local_hello={**hello, "link": f"{hello['siteName']}-link"},
                                on_stream=take_control)
        await client.start()
        west_side = await asyncio.wait_for(self.accepted.get(), 5)
        return Peer(client, west_side, control)


@asynccontextmanager
async def west_site(pki: Pki) -> AsyncIterator[West]:
    plane = ControlPlane(on_change=lambda: None)
    plane.set_local(WEST["siteId"], "west", "")
    accepted: asyncio.Queue[LinkConnection] = asyncio.Queue()

    def on_incoming(conn: LinkConnection, serial: int | None) -> None:
        if serial is None:
            plane.link_down(conn)
        else:
            plane.link_up(conn, outgoing=False)
            accepted.put_nowait(conn)

    listener = LinkListener("inter-router", lambda: dict(WEST), on_incoming=on_incoming)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(False)
    await listener.start(sock, server_context(pki.router.cert_pem, pki.router.key_pem,
                                              client_ca_pem=pki.ca.cert_pem))
    try:
        yield West(plane, pki, listener.port, accepted)
    finally:
        await listener.stop()
        await plane.stop()


def _run(main: Any) -> Any:
    async def bounded() -> Any:
        async with asyncio.timeout(30):
            return await main()

    return asyncio.run(bounded())


async def west_closes(peer: Peer, data: bytes) -> str:
    await peer.send(data)
    reason = await asyncio.wait_for(peer.west_side.wait_closed(), 5)
    await peer.client.aclose("test over")
    return reason


@pytest.mark.parametrize(("line", "why"), [
    (b'{"op": "link", "cost": 2000000}\n', "a link cost must be a number in 0..1000000"),
    (b'{"op": "link", "cost": -1}\n', "a link cost must be a number"),
    (b'{"op": "link", "cost": true}\n', "a link cost must be a number"),
    (b'{"op": "link", "cost": ' + b"9" * 5000 + b"}\n", "malformed advert"),
    (LINK_LINE + ad_line(EAST, 1, name="west"), "contradicts its link hello"),
    (LINK_LINE + ad_line(EAST, 2**64), "sequence number"),
    (LINK_LINE + ad_line(NORTH, 1, name="north\r\n2026 INFO forged\x1b[2J"), "site name"),
    (LINK_LINE + ad_line(NORTH, 1, id="north"), "canonical UUID"),
    (LINK_LINE + ad_line(NORTH, 1, links={WEST["siteId"]: 10**7}), "bad link"),
])
def test_a_control_line_that_breaks_a_rule_closes_the_link_in_one_escaped_line(
    pki: Pki, line: bytes, why: str, caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> str:
        async with west_site(pki) as west:
            peer = await west.link(EAST)
            reason = await west_closes(peer, line)
            assert NORTH["siteId"] not in west.plane.table.ads
            return reason

    with caplog.at_level(logging.INFO, logger="skupper.router"):
        reason = _run(main)
    assert why in reason, reason
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert all(c not in warnings[0] for c in "\r\n\x1b"), warnings
    assert "Traceback" not in caplog.text


def test_a_neighbours_advert_is_taken_only_from_the_neighbour(pki: Pki) -> None:
    async def main() -> None:
        async with west_site(pki) as west:
            east = await west.link(EAST)
            north = await west.link(NORTH)
            await east.send(LINK_LINE + ad_line(EAST, 5, services={"db": {"c": ["db"]}}))
            await north.send(LINK_LINE)
            for _ in range(100):
                if (held := west.plane.table.ad(EAST["siteId"])) is not None:
                    break
                await asyncio.sleep(0.02)
            assert held is not None and held.seq == 5
            # north relays a "newer" advert of east: east's services hijacked to north.
            await north.send(ad_line(EAST, 99, services={"db": {"c": ["evil"]}}))
            await north.send(ad_line(NORTH, 1))  # a line after it, to know it was read
            for _ in range(100):
                if west.plane.table.ad(NORTH["siteId"]) is not None:
                    break
                await asyncio.sleep(0.02)
            kept = west.plane.table.ad(EAST["siteId"])
            assert kept is not None and kept.seq == 5, kept
            assert kept.services["db"].connectors == ("db",)
            assert not east.west_side.is_closed and not north.west_side.is_closed
            await east.client.aclose("test over")
            await north.client.aclose("test over")

    _run(main)


def test_adverts_within_bounds_are_taken(pki: Pki) -> None:
    async def main() -> SiteAd | None:
        async with west_site(pki) as west:
            east = await west.link(EAST)
            now = time.time_ns() // 1000  # sites start their seq from their clock
            await east.send(LINK_LINE + ad_line(EAST, now + 10**9, ns="ns-east",
                                                links={WEST["siteId"]: 1_000_000}))
            for _ in range(100):
                if (held := west.plane.table.ad(EAST["siteId"])) is not None:
                    break
                await asyncio.sleep(0.02)
            await east.client.aclose("test over")
            return held

    held = _run(main)
    assert held is not None and held.links == {WEST["siteId"]: 1_000_000}


async def _until(probe: Any) -> Any:
    for _ in range(200):
        if (value := probe()) is not None:
            return value
        await asyncio.sleep(0.02)
    return None


def test_a_relayed_advert_of_a_neighbour_is_taken_once_the_neighbour_is_gone(pki: Pki) -> None:
    """north's copy of east's advert is newer (east's own says its link to west is gone)."""
    async def main() -> None:
        async with west_site(pki) as west:
            east = await west.link(EAST)
            north = await west.link(NORTH)
            await east.send(LINK_LINE + ad_line(EAST, 5))
            await north.send(LINK_LINE)
            assert await _until(lambda: west.plane.table.ad(EAST["siteId"]))
            await north.send(ad_line(EAST, 6, links={NORTH["siteId"]: 1}) + ad_line(NORTH, 1))
            await _until(lambda: west.plane.table.ad(NORTH["siteId"]))
            assert west.plane.table.ad(EAST["siteId"]).seq == 5  # type: ignore[union-attr]
            await east.client.aclose("east leaves")
            held = await _until(lambda: ad if (ad := west.plane.table.ad(EAST["siteId"]))
                                and ad.seq == 6 else None)
            assert held is not None and held.links == {NORTH["siteId"]: 1}
            await north.client.aclose("test over")

    _run(main)


def test_a_site_speaking_for_itself_overrides_what_others_relayed(pki: Pki) -> None:
    """north relays a forged advert of east (a plausible, high seq) before east links;
    east's own advert replaces it, whatever its seq."""
    async def main() -> None:
        async with west_site(pki) as west:
            north = await west.link(NORTH)
            await north.send(LINK_LINE + ad_line(NORTH, 1, links={WEST["siteId"]: 1,
                                                                  EAST["siteId"]: 1}))
            forged = ad_line(EAST, 10**15, links={NORTH["siteId"]: 1},
                             services={"db": {"c": ["evil"]}})
            await north.send(forged)
            assert await _until(lambda: west.plane.table.ad(EAST["siteId"]))
            east = await west.link(EAST)
            await east.send(LINK_LINE + ad_line(EAST, 7, services={"db": {"c": ["db"]}}))
            held = await _until(lambda: ad if (ad := west.plane.table.ad(EAST["siteId"]))
                                and ad.seq == 7 else None)
            assert held is not None and held.services["db"].connectors == ("db",)
            # While east is linked, north's relays of east wait aside.
            await north.send(forged.replace(b"1000000000000000", b"1000000000000001"))
            await north.send(ad_line(NORTH, 2))
            await _until(lambda: ad if (ad := west.plane.table.ad(NORTH["siteId"]))
                         and ad.seq == 2 else None)
            assert west.plane.table.ad(EAST["siteId"]).seq == 7  # type: ignore[union-attr]
            await east.client.aclose("test over")
            await north.client.aclose("test over")

    _run(main)


def test_an_advert_far_ahead_of_the_clock_is_dropped(pki: Pki) -> None:
    """A seq of 2**63 - 1 would freeze that site's advert everywhere for good."""
    async def main() -> None:
        async with west_site(pki) as west:
            north = await west.link(NORTH)
            await north.send(LINK_LINE + ad_line(EAST, 2**63 - 1) + ad_line(NORTH, 1))
            assert await _until(lambda: west.plane.table.ad(NORTH["siteId"]))
            assert west.plane.table.ad(EAST["siteId"]) is None
            assert not north.west_side.is_closed
            await north.client.aclose("test over")

    _run(main)
