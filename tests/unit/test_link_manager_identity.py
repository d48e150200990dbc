"""The link manager's identity rules: one site id, one name; one certificate, one id;
and incoming links shown by the identity their certificates prove."""

from __future__ import annotations

from typing import Any

from skupper.certs.tls import PeerCertificate
from skupper.daemon.links import LinkManager
from skupper.resources import Resource

WEST_ID = "11111111-1111-4111-8111-111111111111"
EAST_ID = "22222222-2222-4222-8222-222222222222"
OTHER_ID = "33333333-3333-4333-8333-333333333333"


class Writer:
    """Applies submitted status changes to resources held here."""

    def __init__(self) -> None:
        self.resources: dict[tuple[str, str], Resource] = {}

    def submit(self, kind: str, name: str, change: Any) -> None:
        resource = self.resources.setdefault((kind, name), {"metadata": {"name": name}})
        change(resource)


class Connection:
    """What the link manager reads of an accepted LinkConnection."""

    def __init__(self, hello: dict[str, str], unit: str | None = None) -> None:
        self.remote_hello = hello
        self.peer_unit = unit
        self.closed: str | None = None

    @property
    def close_reason(self) -> str | None:
        return self.closed

    def close(self, reason: str) -> None:
        self.closed = reason


def manager() -> tuple[LinkManager, Writer]:
    writer = Writer()
    links = LinkManager(writer, "west")  # type: ignore[arg-type]
    links.set_site({"metadata": {"uid": WEST_ID, "name": "west"}})
    return links, writer


def hello(site_id: str, name: str, link: str) -> dict[str, str]:
    return {"siteId": site_id, "siteName": name, "link": link}


def test_an_incoming_link_is_shown_by_its_certificate() -> None:
    links, writer = manager()
    east = Connection(hello(EAST_ID, "east", "l1"), unit="skupper-grant:g-1")
    mallory = Connection(hello(OTHER_ID, "mallory", "l1"))
    for serial, conn in ((0xE, east), (0xBAD, mallory)):
        assert links.admit(conn.remote_hello, PeerCertificate(serial, conn.remote_hello[
            "siteName"], conn.peer_unit)) is None
        links.on_incoming(conn, serial)  # type: ignore[arg-type]
    status = writer.resources[("Site", "west")]["status"]
    assert status["incomingLinks"] == [
        {"name": "l1", "remoteSiteId": OTHER_ID, "remoteSiteName": "mallory",
         "certificate": "bad", "grant": ""},
        {"name": "l1", "remoteSiteId": EAST_ID, "remoteSiteName": "east",
         "certificate": "e", "grant": "g-1"},
    ]
    links.on_incoming(mallory, None)  # type: ignore[arg-type]
    assert [e["remoteSiteName"] for e in
            writer.resources[("Site", "west")]["status"]["incomingLinks"]] == ["east"]


def test_a_site_id_keeps_its_name_whichever_way_it_was_learned() -> None:
    links, _ = manager()
    east = Connection(hello(EAST_ID, "east", "l1"))
    links.on_incoming(east, 1)  # type: ignore[arg-type]
    claim = hello(EAST_ID, "mallory", "l2")
    assert "belongs to site east, not mallory" in str(
        links.admit(claim, PeerCertificate(2, "mallory", None)))
    # An outgoing link's remote is held to the same rule.
    assert "belongs to site east, not evil" in str(
        links._check_remote({"siteId": EAST_ID, "siteName": "evil"}))
    assert links._check_remote({"siteId": EAST_ID, "siteName": "east"}) is None
    # And what an outgoing link learned first binds incoming claims.
    assert links._check_remote({"siteId": OTHER_ID, "siteName": "north"}) is None
    assert "belongs to site north" in str(
        links.admit(hello(OTHER_ID, "mallory", "l3"), PeerCertificate(3, "mallory", None)))


def test_nobody_speaks_for_this_site_or_for_two_ids() -> None:
    links, _ = manager()
    assert "own id" in str(links.admit(hello(WEST_ID, "west", "l"),
                                       PeerCertificate(1, "west", None)))
    assert "own id" in str(links._check_remote({"siteId": WEST_ID, "siteName": "west"}))
    links.on_incoming(Connection(hello(EAST_ID, "east", "l")), 7)  # type: ignore[arg-type]
    assert "already speaks for the site with id " + EAST_ID in str(
        links.admit(hello(OTHER_ID, "east", "l"), PeerCertificate(7, "east", None)))
    assert links.admit(hello(EAST_ID, "east", "l"), PeerCertificate(7, "east", None)) is None


def test_a_flood_of_network_changes_writes_the_site_status_a_few_times() -> None:
    """Adverts and links from other sites change the network; a peer flooding them gets
    the Site status written at most every NETWORK_WRITE_INTERVAL_SECONDS, the last
    state included."""
    import asyncio

    from skupper.daemon.links import NETWORK_WRITE_INTERVAL_SECONDS

    async def main() -> tuple[int, Writer]:
        links, writer = manager()
        writes = 0
        submit = writer.submit

        def counting(kind: str, name: str, change: Any) -> None:
            nonlocal writes
            writes += 1
            submit(kind, name, change)

        writer.submit = counting  # type: ignore[method-assign]
        for i in range(2000):
            if i == 1999:
                links.on_incoming(Connection(hello(EAST_ID, "east", "last")), 9)  # type: ignore[arg-type]
            else:
                links.refresh_network()
        await asyncio.sleep(NETWORK_WRITE_INTERVAL_SECONDS * 4)
        return writes, writer

    writes, writer = asyncio.run(main())
    assert 1 <= writes <= 3, writes
    status = writer.resources[("Site", "west")]["status"]
    assert [e["name"] for e in status["incomingLinks"]] == ["last"]


class _Services:
    """What the link manager tells its service router: each link_down rewrites the network
    at once (as the control plane does through refresh_network)."""

    def __init__(self, links: LinkManager, writer: Writer) -> None:
        self.links, self.writer = links, writer
        self.seen_at_link_down: list[Any] = []

    def link_down(self, _conn: Any) -> None:
        self.links.refresh_network()
        status = self.writer.resources[("Site", "west")]["status"]
        self.seen_at_link_down.append([dict(e) for e in status["incomingLinks"]])

    def link_up(self, *_args: Any, **_kwargs: Any) -> None:
        pass

    def set_stream_handler(self, *_args: Any) -> None:
        pass

    def network(self, own: Any, others: Any) -> Any:
        return [own, *others]

    def network_links(self) -> list[Any]:
        return []

    def set_site(self, *_args: Any) -> None:
        pass

    def site_name(self, _site_id: str) -> None:
        return None

    async def on_stream(self, _stream: Any) -> None:
        pass


def test_a_link_the_heartbeat_gave_up_on_is_never_shown_as_gone() -> None:
    from skupper.router.link import HEARTBEAT_LOST

    links, writer = manager()
    services = _Services(links, writer)
    links.services = services
    east = Connection(hello(EAST_ID, "east", "l1"))
    east.set_stream_handler = lambda _handler: None  # type: ignore[attr-defined]
    links.on_incoming(east, 0xE)  # type: ignore[arg-type]
    east.close(f"{HEARTBEAT_LOST} for 9 s")
    links.on_incoming(east, None)  # type: ignore[arg-type]
    # Already in the write that link_down caused: failed, with the reason.
    (failed,) = services.seen_at_link_down[-1]
    assert failed["name"] == "l1" and failed["operational"] is False
    assert failed["message"].startswith(HEARTBEAT_LOST)
