"""Seeing the network: network status, /metrics, connection records and the JSON API.

Three real site daemons in a line a - b - c (b redeemed a's token, c redeemed b's), a
listener at a and an echo server behind a connector at c, so every connection crosses
both links. Each view is asked at every site, as an operator would.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_services import LOOPBACK, Net, echo, echo_once, line_of_sites

from tests_support import Skupper, hermetic_env, table, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def line(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    with line_of_sites(tmp_path_factory.mktemp("observe")) as network:
        network.connector("c", "echo", network.serve(echo))
        network.echo_port = network.listener("a", "echo")  # type: ignore[attr-defined]
        network.wait_ready("a", "echo")
        yield network


def observer(net: Net, ns: str) -> dict[str, str]:
    path = net.skupper.namespace_dir(ns) / "runtime" / "observer.json"
    info: dict[str, str] = wait_for(f"{ns}'s observer", lambda: path.is_file() and json.loads(
        path.read_text()), 10)
    assert path.stat().st_mode & 0o777 == 0o600
    return info


def get(url: str, token: str | None = None) -> tuple[int, bytes]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    assert parts.hostname == LOOPBACK
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        connection.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""),
                           headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def metrics(net: Net, ns: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, body = get(observer(net, ns)["metrics"])
    assert status == 200
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(body.decode())
            for sample in family.samples}


def network_doc(net: Net, ns: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(net.run("network", "status", "-n", ns, "-o", "json").stdout)
    return doc


def test_network_status_is_the_same_from_every_site(line: Net) -> None:
    def converged() -> dict[str, Any] | None:
        docs = {ns: network_doc(line, ns) for ns in "abc"}
        complete = all(len(d["sites"]) == 3 and len(d["links"]) == 2 and d["services"]
                       and all(svc["listeners"] and svc["connectors"] for svc in d["services"])
                       for d in docs.values())
        return docs if complete else None

    docs = wait_for("every site sees 3 sites, 2 links and the service", converged, 15)
    for ns, doc in docs.items():
        assert doc["sites"][0]["name"] == ns  # the asking site first
        assert {s["name"] for s in doc["sites"]} == {"a", "b", "c"}
        assert {(lk["fromSite"], lk["toSite"]) for lk in doc["links"]} == {("b", "a"),
                                                                            ("c", "b")}
        assert all(lk["state"] == "up" for lk in doc["links"])
        (service,) = doc["services"]
        assert service["routingKey"] == "echo"
        assert service["listeners"] == [{"site": "a", "name": "echo"}]
        assert service["connectors"] == [{"site": "c", "name": "echo"}]
    assert docs["a"]["services"] == docs["b"]["services"] == docs["c"]["services"]
    # b's own two links carry their heartbeat round trips (pings every 2 s).
    def timed() -> bool:
        return all(isinstance(lk.get("rttSeconds"), float) and 0 < lk["rttSeconds"] < 1
                   for lk in network_doc(line, "b")["links"])

    wait_for("b's links show their round-trip times", timed, 10)
    text = line.run("network", "status", "-n", "b").stdout
    assert "Sites in the network: 3" in text and "Links: 2" in text
    rows = table(text.split("\n\nLinks")[0].split("\n", 1)[1])
    assert sorted(row["NAME"] for row in rows) == ["a", "b", "c"]


def test_metrics_count_connections_and_bytes_at_the_listeners_site(line: Net) -> None:
    port = line.echo_port  # type: ignore[attr-defined]
    before = metrics(line, "a")
    payload = b"x" * 100_000
    for _ in range(3):
        assert echo_once(port, payload) == payload
    labels = (("dest_site", "c"), ("routing_key", "echo"), ("source_site", "a"))

    def counted() -> dict[Any, float] | None:
        now = metrics(line, "a")
        closed = now.get(("skupper_connections_closed_total", labels), 0)
        was = before.get(("skupper_connections_closed_total", labels), 0)
        return now if closed - was >= 3 else None

    after = wait_for("three closed connections counted at a", counted, 10)
    for name in ("skupper_sent_bytes_total", "skupper_received_bytes_total"):
        assert after[name, labels] - before.get((name, labels), 0) >= 300_000
    assert after["skupper_connections_opened_total", labels] >= 3
    assert after["skupper_links_up", (("direction", "outgoing"),)] == 0
    assert after["skupper_links_up", (("direction", "incoming"),)] == 1
    assert any(name == "process_resident_memory_bytes" for name, _ in after)
    assert after["skupper_grant_redemptions_total", (("outcome", "redeemed"),)] == 1
    assert any(name == "skupper_site_info" and dict(lbl)["site"] == "a" for name, lbl in after)
    # The middle site carries the bytes on its links but counts no connection.
    middle = metrics(line, "b")
    assert not any(name == "skupper_connections_opened_total" for name, _ in middle)
    sent = sum(v for (name, _), v in middle.items() if name == "skupper_link_sent_bytes_total")
    assert sent >= 600_000


def test_connection_records_name_the_sites_crossed(line: Net) -> None:
    port = line.echo_port  # type: ignore[attr-defined]
    with socket.create_connection((LOOPBACK, port), timeout=10) as sock:
        sock.sendall(b"hello")
        assert sock.recv(5) == b"hello"
        host, client_port = sock.getsockname()[:2]
        client = f"{host}:{client_port}"

        def record(ns: str) -> dict[str, Any] | None:
            doc = json.loads(line.run("connection", "status", "-n", ns, "-o", "json").stdout)
            return next((r for r in doc["connections"]
                         if r["client"] == client and r["state"] == "open"), None)

        at_a = wait_for("the open connection at a", lambda: record("a"), 10)
        at_c = wait_for("the open connection at c", lambda: record("c"), 10)
    assert at_a["sites"] == ["a", "b", "c"] and at_a["role"] == "listener"
    assert at_a["routingKey"] == "echo" and at_a["bytesIn"] == 5 and at_a["bytesOut"] == 5
    assert at_c["sites"] == ["a", "b", "c"] and at_c["role"] == "connector"
    assert at_c["sourceSite"] == "a" and at_c["destSite"] == "c"

    def closed() -> dict[str, Any] | None:
        doc = json.loads(line.run("connection", "status", "-n", "a", "-o", "json").stdout)
        return next((r for r in doc["connections"]
                     if r["client"] == client and r["state"] != "open"), None)

    done = wait_for("the closed connection at a", closed, 10)
    assert done["state"] in ("closed", "reset") and done["duration"] >= 0
    rows = table(line.run("connection", "status", "-n", "a").stdout)
    assert any(row["CLIENT"] == client and row["SITES"] == "a > b > c" for row in rows)


def test_a_refused_connection_is_recorded(line: Net) -> None:
    port = line.listener("a", "nowhere")
    # The listener resets the client at once: during connect() or at the first read.
    with pytest.raises(OSError), socket.create_connection((LOOPBACK, port), timeout=10) as sock:
        if sock.recv(1) == b"":
            raise ConnectionResetError("closed without a byte")
    doc = json.loads(line.run("connection", "status", "-n", "a", "-o", "json").stdout)
    assert any(r["routingKey"] == "nowhere" and r["state"] == "refused"
               for r in doc["connections"])
    assert metrics(line, "a")[
        "skupper_connections_refused_total", (("routing_key", "nowhere"),)] >= 1


def test_the_api_and_console_need_the_token(line: Net) -> None:
    info = observer(line, "a")
    api = info["api"]
    for url in (f"{api}/network", f"{api}/connections", info["console"].split("?")[0]):
        status, body = get(url)
        assert status == 401 and body == b""
        status, body = get(url, token="not-the-token-" + "x" * 20)
        assert status == 401 and body == b""
    status, body = get(f"{api}/network", token=info["token"])
    assert status == 200 and json.loads(body)["site"]["name"] == "a"
    status, body = get(info["console"])
    assert status == 200 and b"assets/console.js" in body
    assert line.run("network", "console", "-n", "a").stdout.strip() == info["console"]
    status_lines = line.run("system", "status", "-n", "a").stdout.splitlines()
    assert f"Metrics: {info['metrics']}" in status_lines


def test_views_of_a_stopped_site_say_so(line: Net, tmp_path: Path) -> None:
    skupper = Skupper(home=tmp_path / "home", env=hermetic_env(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    try:
        skupper.run("site", "create", "lone")
        skupper.run("system", "stop")
        for command in (("network", "status"), ("connection", "status"),
                        ("network", "console")):
            done = skupper.fails(*command)
            assert done.stderr.count("\n") == 1 and "stopped" in done.stderr, done.stderr
    finally:
        skupper.kill_daemons()
