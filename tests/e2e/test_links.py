"""Site linking end to end: issue at west, redeem at east, live links over mutual TLS.

Real ``skupper`` commands and real site daemons in one hermetic data home; two sites
are two namespaces of it. Every wait polls a CLI status against a deadline.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import stat
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from skupper.certs.issue import generate_ca, issue_certificate, verify_signed_by
from skupper.certs.tls import client_context
from tests_support import Skupper, free_port, hermetic_env, kill9, table, wait_for

pytestmark = pytest.mark.e2e


ALREADY_USED = "already been used"
EXPIRED = "the token has expired (its grant expired at "


# --- helpers ------------------------------------------------------------------------------






def link_rows(skupper: Skupper, ns: str) -> list[dict[str, str]]:
    return table(skupper.run("link", "status", "-n", ns).stdout)


def incoming(skupper: Skupper, ns: str) -> list[dict[str, str]]:
    return [r for r in link_rows(skupper, ns) if r["DIRECTION"] == "incoming"]


def links(skupper: Skupper, ns: str) -> list[dict[str, Any]]:
    return list(json.loads(skupper.run("link", "status", "-n", ns, "-o", "json").stdout)["items"])


def site(skupper: Skupper, ns: str) -> dict[str, Any]:
    return dict(json.loads(skupper.run("site", "status", "-n", ns, "-o", "json").stdout))


def sites_in_network(skupper: Skupper, ns: str) -> str:
    rows = table(skupper.run("site", "status", "-n", ns).stdout)
    assert len(rows) == 1, rows
    return rows[0]["SITES-IN-NETWORK"]


def grants(skupper: Skupper, ns: str = "west") -> dict[str, dict[str, Any]]:
    done = skupper.run("access-grant", "status", "-n", ns, "-o", "json")
    return {g["metadata"]["name"]: g for g in json.loads(done.stdout)["items"]}


def redemptions(skupper: Skupper, grant: str, ns: str = "west") -> int:
    return int((grants(skupper, ns)[grant].get("status") or {}).get("redemptions", 0))


def secrets_dir(skupper: Skupper, ns: str) -> Path:
    return skupper.namespace_dir(ns) / "secrets"


def secret_entries(skupper: Skupper, ns: str) -> set[str]:
    """Everything in the namespace's secrets folder, hidden version folders included."""
    folder = secrets_dir(skupper, ns)
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def issue(skupper: Skupper, file: Path | str, *extra: str, ns: str = "west") -> str:
    """Issue a token at ``ns``; the grant's name."""
    done = skupper.run("access-token", "issue", str(file), "-n", ns, *extra)
    match = re.search(r'Grant "([^"]+)" is ready', done.stdout + done.stderr)
    assert match, done.stdout
    return match.group(1)


def token_name(file: Path) -> str:
    return str(yaml.safe_load(file.read_text())["metadata"]["name"])


def redeem_output(name: str, file: Path | str) -> str:
    return (
        "Waiting for status...\n"
        f'Link "{name}" is active.\n'
        f"You can now safely delete {file}.\n"
    )


def refused(done: Any, *fragments: str) -> str:
    """A failure with exactly one clear error line on stderr and nothing on stdout."""
    assert done.returncode != 0, done
    assert done.stdout == "", done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("Error: "), lines[0]
    assert "Traceback" not in done.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return str(lines[0])


def outgoing_state(skupper: Skupper, ns: str = "east") -> tuple[str, str]:
    rows = [r for r in link_rows(skupper, ns) if r["DIRECTION"] == "outgoing"]
    assert len(rows) == 1, rows
    return rows[0]["STATUS"], rows[0]["MESSAGE"]


def wait_ready(skupper: Skupper, timeout: float, ns: str = "east") -> None:
    wait_for(f"the link at {ns} Ready",
             lambda: outgoing_state(skupper, ns)[0] == "Ready", timeout)


def wait_incoming(skupper: Skupper, name: str, remote: str, timeout: float,
                  ns: str = "west") -> dict[str, str]:
    def probe() -> dict[str, str] | None:
        rows = incoming(skupper, ns)
        return rows[0] if len(rows) == 1 and rows[0]["NAME"] == name \
            and rows[0]["STATUS"] == "Ready" and rows[0]["REMOTE SITE"] == remote else None

    return wait_for(f"{ns} sees the incoming link {name} from {remote}", probe, timeout)






def inter_router(skupper: Skupper, ns: str = "west") -> tuple[str, int]:
    endpoints = site(skupper, ns)["status"]["endpoints"]
    (endpoint,) = [e for e in endpoints if e["name"] == "inter-router"]
    return str(endpoint["host"]), int(endpoint["port"])


@pytest.fixture
def sites(skupper: Skupper) -> Skupper:
    """west with link access, east without (a redeeming site needs none)."""
    skupper.run("site", "create", "west", "-n", "west", "--enable-link-access")
    skupper.run("site", "create", "east", "-n", "east")
    return skupper


@pytest.fixture
def linked(sites: Skupper, tmp_path: Path) -> tuple[Skupper, str]:
    """east redeemed a token from west; the link is Ready on both sides."""
    file = tmp_path / "token.yaml"
    name = issue(sites, file)
    sites.run("access-token", "redeem", str(file), "-n", "east")
    wait_incoming(sites, name, "east", 5)
    return sites, name


# --- redeeming ----------------------------------------------------------------------------


def test_redeem_links_east_to_west_and_both_sides_see_it(sites: Skupper, tmp_path: Path) -> None:
    skupper = sites
    file = tmp_path / "west.token"
    grant = issue(skupper, file, "--cost", "7")
    name = token_name(file)
    assert name == grant

    done = skupper.run("access-token", "redeem", str(file), "-n", "east")
    assert done.stdout == redeem_output(name, file)
    assert done.stderr == ""

    # east: one outgoing link, Ready, to west, with the token's cost.
    (row,) = link_rows(skupper, "east")
    assert row == {"NAME": name, "DIRECTION": "outgoing", "STATUS": "Ready",
                   "REMOTE SITE": "west", "COST": "7", "MESSAGE": "OK"}
    # west: the same link, incoming from east.
    assert wait_incoming(skupper, name, "east", 5)["DIRECTION"] == "incoming"
    assert [r for r in link_rows(skupper, "west") if r["DIRECTION"] == "outgoing"] == []

    # The Link resource at east, in upstream's shape.
    west_site = site(skupper, "west")
    (link,) = links(skupper, "east")
    assert link["apiVersion"] == "skupper.io/v2alpha1"
    assert link["kind"] == "Link"
    assert link["metadata"]["name"] == name
    spec = link["spec"]
    assert spec["cost"] == 7
    assert spec["tlsCredentials"] == name
    host, port = inter_router(skupper)
    assert {"name": "inter-router", "host": host, "port": str(port),
            "group": spec["endpoints"][0]["group"]} in spec["endpoints"]
    assert all(isinstance(e["port"], str) for e in spec["endpoints"])
    status = link["status"]
    assert status["status"] == "Ready"
    assert status["message"] == "OK"
    assert status["remoteSiteName"] == "west"
    assert status["remoteSiteId"] == west_site["metadata"]["uid"]
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions["Configured"] == conditions["Operational"] == conditions["Ready"] == "True"
    single = json.loads(skupper.run("link", "status", name, "-n", "east", "-o", "json").stdout)
    assert single["metadata"]["name"] == name and single["status"]["status"] == "Ready"

    # Both sites count two sites in the network, and know each other by id.
    east_site = site(skupper, "east")
    for ns in ("east", "west"):
        assert wait_for(f"{ns} counts 2 sites", lambda ns=ns: sites_in_network(skupper, ns) == "2",
                        5)
    network_ids = {entry["id"] for entry in site(skupper, "west")["status"]["network"]}
    assert network_ids == {west_site["metadata"]["uid"], east_site["metadata"]["uid"]}

    # The credential east keeps: private files in a private folder, from west's CA.
    root = secrets_dir(skupper, "east")
    folder = (root / name).resolve()
    assert mode(root) == 0o700
    assert mode(folder) == 0o700
    assert sorted(p.name for p in folder.iterdir()) == ["ca.crt", "tls.crt", "tls.key"]
    for file_path in folder.iterdir():
        assert mode(file_path) == 0o600, file_path
    west_ca = (secrets_dir(skupper, "west") / "skupper-site-ca" / "tls.crt").read_bytes()
    assert (folder / "ca.crt").read_bytes() == west_ca
    assert verify_signed_by((folder / "tls.crt").read_bytes(), west_ca)

    # The grant at west counts the redemption.
    assert redemptions(skupper, grant) == 1


def test_redeem_needs_no_link_access_at_the_redeeming_site(
    sites: Skupper, tmp_path: Path
) -> None:
    skupper = sites
    east = site(skupper, "east")
    assert east["spec"].get("linkAccess", "none") in ("none", "", None)
    assert not (east.get("status") or {}).get("endpoints")
    # east cannot issue tokens...
    refused(skupper.run("access-token", "issue", str(tmp_path / "x"), "-n", "east",
                        check=False), "Link access is not enabled")
    # ...but redeems one, and the link comes up with the default cost.
    file = tmp_path / "token.yaml"
    name = issue(skupper, file)
    done = skupper.run("access-token", "redeem", str(file), "-n", "east")
    assert done.stdout == redeem_output(name, file)
    (row,) = link_rows(skupper, "east")
    assert (row["STATUS"], row["REMOTE SITE"], row["COST"]) == ("Ready", "west", "1")
    wait_incoming(skupper, name, "east", 5)


def test_a_single_use_token_redeems_once(sites: Skupper, tmp_path: Path) -> None:
    skupper = sites
    skupper.run("site", "create", "north", "-n", "north")
    file = tmp_path / "token.yaml"
    grant = issue(skupper, file)
    skupper.run("access-token", "redeem", str(file), "-n", "east")
    north_secrets = secret_entries(skupper, "north")

    done = skupper.run("access-token", "redeem", str(file), "-n", "north", check=False)
    refused(done, ALREADY_USED)
    assert links(skupper, "north") == []
    assert link_rows(skupper, "north") == []
    assert secret_entries(skupper, "north") == north_secrets
    assert grant not in north_secrets
    assert redemptions(skupper, grant) == 1
    # east's link is unharmed.
    assert outgoing_state(skupper, "east")[0] == "Ready"


def test_an_expired_token_is_refused_and_leaves_nothing(sites: Skupper, tmp_path: Path) -> None:
    skupper = sites
    file = tmp_path / "token.yaml"
    normal_env = skupper.env
    skupper.env = {**normal_env, "SKUPPER_TEST_MIN_EXPIRATION": "1"}
    try:
        grant = issue(skupper, file, "--expiration-period", "2s")
    finally:
        skupper.env = normal_env
    expires = datetime.fromisoformat(
        grants(skupper)[grant]["status"]["expirationTime"].replace("Z", "+00:00"))
    assert (expires - datetime.now(UTC)).total_seconds() <= 3
    # West's own status says when the grant has expired; wait for that, not a guess.
    wait_for("the grant to expire",
             lambda: "expired" in str(grants(skupper)[grant]["status"].get("message")), 8, 0.2)
    assert datetime.now(UTC) >= expires
    before = secret_entries(skupper, "east")

    done = skupper.run("access-token", "redeem", str(file), "-n", "east", check=False)
    refused(done, EXPIRED)
    assert links(skupper, "east") == []
    assert secret_entries(skupper, "east") == before
    assert redemptions(skupper, grant) == 0


# --- tampered tokens ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tamper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Skupper, Path, str]]:
    """One west and one north for all the tampered tokens; north must stay untouched."""
    home = tmp_path_factory.mktemp("tamper") / "home"
    home.mkdir()
    skupper = Skupper(home=home, env=hermetic_env(home))
    try:
        skupper.run("site", "create", "west", "-n", "west", "--enable-link-access")
        skupper.run("site", "create", "north", "-n", "north")
        file = home.parent / "genuine.yaml"
        grant = issue(skupper, file)
        yield skupper, file, grant
    finally:
        skupper.kill_daemons()


def _spec(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(token: dict[str, Any]) -> None:
        token["spec"][key] = value

    return change


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda token: token["spec"].pop(key)


def _url(change: Callable[[str], str]) -> Callable[[dict[str, Any]], None]:
    def apply(token: dict[str, Any]) -> None:
        token["spec"]["url"] = change(token["spec"]["url"])

    return apply


def _other_port(url: str) -> str:
    parts = urlsplit(url)
    return parts._replace(netloc=f"127.0.0.1:{free_port()}").geturl()


def _flip_code(token: dict[str, Any]) -> None:
    code = token["spec"]["code"]
    token["spec"]["code"] = code[:-1] + ("A" if code[-1] != "A" else "B")


def _other_ca(token: dict[str, Any]) -> None:
    # A perfectly valid CA certificate, just not the one that signed west's grant server.
    token["spec"]["ca"] = generate_ca("west grant server CA").cert_pem.decode()


GARBAGE_PEM = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"

# case: (how to alter the token | literal file text | None for no file, expected fragment)
TAMPERED: dict[str, tuple[Callable[[dict[str, Any]], None] | str | None, str]] = {
    "wrong code": (_flip_code, "refused the token's code"),
    "another valid CA": (_other_ca, "certificate does not match the token's CA"),
    "http url": (_url(lambda u: u.replace("https://", "http://", 1)), "must be https"),
    "closed port": (_url(_other_port), "nothing is listening at 127.0.0.1"),
    "CA not PEM": (_spec("ca", "just some text"), "spec.ca is not a PEM certificate"),
    "CA garbage PEM": (_spec("ca", GARBAGE_PEM), "spec.ca is not a valid PEM certificate"),
    "missing file": (None, "no such file"),
    "not YAML": ("kind: AccessToken\nspec: {url: [\n", "not valid YAML"),
    "not a mapping": ("- just\n- a list\n", "not an AccessToken"),
    "wrong kind": (lambda t: t.__setitem__("kind", "Secret"), "kind is 'Secret'"),
    "no url": (_drop("url"), "spec.url is missing"),
    "no code": (_drop("code"), "spec.code is missing"),
    "no ca": (_drop("ca"), "spec.ca is missing"),
    "empty file": ("", "it is empty"),
    "two documents": ("---\nkind: AccessToken\n---\nkind: AccessToken\n", "YAML documents"),
}


@pytest.mark.parametrize("case", list(TAMPERED))
def test_a_tampered_token_fails_cleanly_and_burns_nothing(
    tamper: tuple[Skupper, Path, str], tmp_path: Path, case: str
) -> None:
    skupper, genuine, grant = tamper
    alteration, fragment = TAMPERED[case]
    file = tmp_path / "tampered.yaml"
    if isinstance(alteration, str):
        file.write_text(alteration)
    elif alteration is not None:
        token = yaml.safe_load(genuine.read_text())
        alteration(token)
        file.write_text(yaml.safe_dump(token))
    count = redemptions(skupper, grant)
    secrets_before = secret_entries(skupper, "north")

    done = skupper.run("access-token", "redeem", str(file), "-n", "north", check=False)
    refused(done, fragment)
    assert links(skupper, "north") == []
    assert secret_entries(skupper, "north") == secrets_before
    assert redemptions(skupper, grant) == count


def test_the_genuine_token_still_redeems_after_the_tampered_ones(
    tamper: tuple[Skupper, Path, str],
) -> None:
    skupper, genuine, grant = tamper
    done = skupper.run("access-token", "redeem", str(genuine), "-n", "north")
    assert done.stdout == redeem_output(grant, genuine)
    assert redemptions(skupper, grant) == 1


# --- self-healing -------------------------------------------------------------------------


def test_a_killed_site_comes_back_and_the_link_heals_by_itself(
    linked: tuple[Skupper, str],
) -> None:
    skupper, name = linked

    # west dies: east notices within 10 s and says why.
    kill9(skupper, "west")

    def broken() -> tuple[str, str] | None:
        state, message = outgoing_state(skupper)
        return (state, message) if state != "Ready" and "connect" in message else None

    state, message = wait_for("east to see its link down", broken, 10)
    assert state in ("Error", "Pending"), state
    host, port = inter_router(skupper)
    assert f"{host}:{port}" in message, message
    wait_for("east to count 1 site", lambda: sites_in_network(skupper, "east") == "1", 10)

    # west comes back: east redials with no command at east.
    skupper.run("system", "start", "-n", "west")
    wait_ready(skupper, 5)
    wait_incoming(skupper, name, "east", 5)
    assert sites_in_network(skupper, "east") == "2"

    # east dies: west drops the incoming link; east comes back and redials.
    kill9(skupper, "east")
    wait_for("west to drop the incoming link", lambda: incoming(skupper, "west") == [], 10)
    skupper.run("system", "start", "-n", "east")
    wait_ready(skupper, 5)
    wait_incoming(skupper, name, "east", 5)
    wait_for("west to count 2 sites", lambda: sites_in_network(skupper, "west") == "2", 5)


def test_restarts_never_duplicate_the_link(linked: tuple[Skupper, str]) -> None:
    skupper, name = linked
    for round_ in range(3):
        if round_ % 2:
            skupper.run("system", "stop", "-n", "west")
        else:
            kill9(skupper, "west")
        wait_for("east to see its link down", lambda: outgoing_state(skupper)[0] != "Ready", 10)
        skupper.run("system", "start", "-n", "west")
        wait_ready(skupper, 5)
        wait_incoming(skupper, name, "east", 5)

    (link,) = links(skupper, "east")
    assert link["metadata"]["name"] == name
    assert len(link_rows(skupper, "east")) == 1
    assert len(incoming(skupper, "west")) == 1
    for ns in ("east", "west"):
        # The Site's network is written apart from the Link status: give it its moment.
        def settled(ns: str = ns) -> bool:
            status = site(skupper, ns)["status"]
            network = status.get("network") or []
            return (len(network) == 2 and status.get("sitesInNetwork") == 2
                    and [lk["name"] for lk in network[0]["links"]] == [name])

        wait_for(f"{ns} to show one link to one other site", settled, 5)


def test_a_stopped_site_does_not_claim_its_incoming_links_are_ready(
    linked: tuple[Skupper, str],
) -> None:
    skupper, name = linked
    skupper.run("system", "stop", "-n", "west")
    rows = incoming(skupper, "west")
    assert [r for r in rows if r["NAME"] == name and r["STATUS"] == "Ready"] == [], rows


# --- deleting -----------------------------------------------------------------------------


def test_link_delete_removes_link_and_credentials_and_west_sees_it_go(
    linked: tuple[Skupper, str],
) -> None:
    skupper, name = linked
    done = skupper.run("link", "delete", name, "-n", "east")
    assert done.stdout == f'Waiting for deletion to complete...\nLink "{name}" is deleted.\n'

    assert links(skupper, "east") == []
    assert link_rows(skupper, "east") == []
    assert not (secrets_dir(skupper, "east") / name).exists()
    assert not [e for e in secret_entries(skupper, "east") if name in e]
    wait_for("west to drop the incoming link", lambda: incoming(skupper, "west") == [], 5)
    wait_for("west to count 1 site", lambda: sites_in_network(skupper, "west") == "1", 5)
    assert sites_in_network(skupper, "east") == "1"
    # Nothing redials a deleted link.
    time.sleep(0.5)
    assert incoming(skupper, "west") == []


def test_deleting_an_unknown_link_fails_cleanly(linked: tuple[Skupper, str]) -> None:
    skupper, name = linked
    refused(skupper.run("link", "delete", "no-such-link", "-n", "east", check=False),
            'No link "no-such-link"')
    # West cannot delete east's link, and says where it is deleted instead.
    refused(skupper.run("link", "delete", name, "-n", "west", check=False),
            f'Link "{name}" is an incoming link', "Delete it at site east")
    assert outgoing_state(skupper)[0] == "Ready"
    assert len(incoming(skupper, "west")) == 1


# --- the inter-router port ----------------------------------------------------------------


def _first_read(context: ssl.SSLContext, host: str, port: int) -> bytes | str:
    """Handshake, send a byte, read: the bytes, "timeout" if the server waits, or the error."""
    with socket.create_connection((host, port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=host) as tls:
        assert tls.version() == "TLSv1.3"
        tls.settimeout(1.0)
        try:
            tls.sendall(b"\x00")
            return tls.recv(100)
        except TimeoutError:
            return "timeout"
        except (ssl.SSLError, ConnectionError) as exc:
            return f"error: {exc}"


def test_the_inter_router_port_accepts_only_certificates_from_the_site_ca(
    linked: tuple[Skupper, str],
) -> None:
    skupper, name = linked
    host, port = inter_router(skupper)
    assert host == "127.0.0.1"
    folder = secrets_dir(skupper, "east") / name
    west_ca = (folder / "ca.crt").read_bytes()

    # east's issued certificate: the handshake completes and west waits for the hello.
    good = client_context(west_ca, cert_pem=(folder / "tls.crt").read_bytes(),
                          key_pem=(folder / "tls.key").read_bytes())
    assert _first_read(good, host, port) == "timeout"

    # A client certificate with the same name from another CA: refused on first read.
    other = generate_ca("skupper-site-ca")
    impostor = issue_certificate(other, "east", usage="client")
    bad = client_context(west_ca, cert_pem=impostor.cert_pem, key_pem=impostor.key_pem)
    outcome = _first_read(bad, host, port)
    assert outcome == b"" or str(outcome).startswith("error"), outcome
    # No certificate at all: refused too.
    outcome = _first_read(client_context(west_ca), host, port)
    assert outcome == b"" or str(outcome).startswith("error"), outcome

    # The real link was not disturbed.
    assert outgoing_state(skupper)[0] == "Ready"
    assert len(incoming(skupper, "west")) == 1


# --- upstream's token files ---------------------------------------------------------------


def _upstream_block(name: str, spec: dict[str, Any], cost: int) -> str:
    """As upstream writes it: block style, keys sorted, the CA as a literal block."""
    ca = "".join(f"    {line}\n" for line in spec["ca"].strip().splitlines())
    return (
        "apiVersion: skupper.io/v2alpha1\n"
        "kind: AccessToken\n"
        "metadata:\n"
        f"  name: {name}\n"
        "spec:\n"
        "  ca: |\n"
        f"{ca}"
        f"  code: {spec['code']}\n"
        f"  linkCost: {cost}\n"
        f"  url: {spec['url']}\n"
    )


def _upstream_flow(name: str, spec: dict[str, Any]) -> str:
    """The same token as flow mappings and quoted strings, without linkCost."""
    return (
        'apiVersion: "skupper.io/v2alpha1"\n'
        "kind: 'AccessToken'\n"
        f'metadata: {{name: "{name}"}}\n'
        f"spec: {{ca: {json.dumps(spec['ca'])}, code: '{spec['code']}', "
        f'url: "{spec["url"]}"}}\n'
    )


def test_a_token_in_upstreams_layout_redeems_the_same_way(
    sites: Skupper, tmp_path: Path
) -> None:
    skupper = sites
    made = {}
    for style in ("block", "flow"):
        done = skupper.run("access-token", "issue", "-", "-n", "west")
        ours = yaml.safe_load(done.stdout)
        assert ours["kind"] == "AccessToken"
        name, spec = ours["metadata"]["name"], ours["spec"]
        text = _upstream_block(name, spec, 3) if style == "block" else _upstream_flow(name, spec)
        assert yaml.safe_load(text) == {
            "apiVersion": "skupper.io/v2alpha1", "kind": "AccessToken",
            "metadata": {"name": name},
            "spec": {k: v for k, v in {**spec, "linkCost": 3}.items()
                     if style == "block" or k != "linkCost"},
        }
        file = tmp_path / f"upstream-{style}.yaml"
        file.write_text(text)
        made[style] = (name, file)

    for style, expected_cost in (("block", "3"), ("flow", "1")):
        name, file = made[style]
        done = skupper.run("access-token", "redeem", str(file), "-n", "east")
        assert done.stdout == redeem_output(name, file)
        (row,) = [r for r in link_rows(skupper, "east") if r["NAME"] == name]
        assert (row["STATUS"], row["REMOTE SITE"], row["COST"]) == ("Ready", "west",
                                                                     expected_cost)
    names = sorted(name for name, _ in made.values())
    wait_for("west to see both incoming links",
             lambda: sorted(r["NAME"] for r in incoming(skupper, "west")) == names, 5)
    assert sites_in_network(skupper, "east") == "2"
