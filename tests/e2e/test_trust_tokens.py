"""A token never takes over the site that redeems it (issue 9, the token side).

Real ``skupper`` commands against real site daemons; the hostile grant server is a real
HTTPS server (TLS 1.3, its own CA) in the test process on loopback, answering whatever
each test makes it answer. After every refusal the redeeming site's secrets are
byte-for-byte what they were, and no Link is left.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import re
import ssl
import stat
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from skupper.certs.issue import KeyPair, generate_ca, issue_certificate
from tests_support import Skupper, free_port, table, wait_for

pytestmark = pytest.mark.e2e

Documents = list[dict[str, Any]]
Answer = Callable[[str], Documents]  # the request's name header -> the answer's documents


# --- a hostile grant server -----------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass
class GrantServer:
    """A real HTTPS grant server with its own CA that answers what ``answer`` returns."""

    folder: Path
    answer: Answer = field(default=lambda name: [])
    requests: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ca = generate_ca("hostile grant server CA")
        # The "site CA" this server hands out, and a client credential from it.
        self.site_ca = generate_ca("hostile site CA")
        self.client = issue_certificate(self.site_ca, "east", usage="client")
        server = issue_certificate(self.ca, "127.0.0.1", usage="server", hosts=["127.0.0.1"])
        (self.folder / "server.crt").write_bytes(server.cert_pem)
        (self.folder / "server.key").write_bytes(server.key_pem)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        context.load_cert_chain(self.folder / "server.crt", self.folder / "server.key")
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                code = self.rfile.read(length).decode()
                name = str(self.headers.get("name"))
                outer.requests.append({"name": name, "subject": str(self.headers.get("subject")),
                                       "code": code})
                body = "".join("---\n" + yaml.safe_dump(d) for d in outer.answer(name)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/yaml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    def token(self, path: Path, name: str | None = None, **spec: Any) -> Path:
        token = {
            "apiVersion": "skupper.io/v2alpha1", "kind": "AccessToken",
            "metadata": {"name": name or f"west-{uuid.uuid4()}"},
            "spec": {"ca": self.ca.cert_pem.decode(), "code": "A" * 24, "linkCost": 1,
                     "url": f"https://127.0.0.1:{self.port}/{uuid.uuid4()}", **spec},
        }
        path.write_text(yaml.safe_dump(token))
        return path

    def honest(self, name: str, port: int = 1, credential: KeyPair | None = None) -> Documents:
        """What a grant server answers: a Secret and one Link, both named ``name``."""
        client = credential or self.client
        return [
            {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
             "metadata": {"name": name},
             "data": {"tls.crt": _b64(client.cert_pem), "tls.key": _b64(client.key_pem),
                      "ca.crt": _b64(self.site_ca.cert_pem)}},
            {"apiVersion": "skupper.io/v2alpha1", "kind": "Link", "metadata": {"name": name},
             "spec": {"endpoints": [
                 {"name": "inter-router", "host": "127.0.0.1", "port": str(port), "group": "g"},
                 {"name": "edge", "host": "127.0.0.1", "port": str(port), "group": "g"}],
                 "tlsCredentials": name}},
        ]


@pytest.fixture
def grant_server(tmp_path: Path) -> Iterator[GrantServer]:
    folder = tmp_path / "grant-server"
    folder.mkdir()
    server = GrantServer(folder)
    try:
        yield server
    finally:
        server.stop()


# --- helpers --------------------------------------------------------------------------------


def secrets_snapshot(skupper: Skupper, ns: str) -> dict[str, dict[str, bytes]]:
    """Every secret of ``ns`` with every key's bytes (hidden version folders by name)."""
    root = skupper.namespace_dir(ns) / "secrets"
    out: dict[str, dict[str, bytes]] = {}
    for entry in sorted(root.iterdir()) if root.exists() else []:
        folder = entry.resolve()
        out[entry.name] = {f.name: f.read_bytes() for f in sorted(folder.iterdir())} \
            if folder.is_dir() else {}
    return out


def links(skupper: Skupper, ns: str) -> list[dict[str, Any]]:
    done = skupper.run("link", "status", "-n", ns, "-o", "json")
    return list(json.loads(done.stdout)["items"])


def site(skupper: Skupper, ns: str) -> dict[str, Any]:
    return dict(json.loads(skupper.run("site", "status", "-n", ns, "-o", "json").stdout))


def refused(done: Any, *fragments: str) -> str:
    """One error line on stderr, nothing on stdout but "Waiting for status...", non-zero."""
    assert done.returncode != 0, done
    assert done.stdout in ("", "Waiting for status...\n"), done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("Error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return str(lines[0])


def issue(skupper: Skupper, file: Path, *extra: str, ns: str = "west") -> str:
    done = skupper.run("access-token", "issue", str(file), "-n", ns, *extra)
    match = re.search(r'Grant "([^"]+)" is ready', done.stdout)
    assert match, done.stdout
    return match.group(1)


def redemptions(skupper: Skupper, grant: str, ns: str = "west") -> int:
    done = skupper.run("access-grant", "status", "-n", ns, "-o", "json")
    (found,) = [g for g in json.loads(done.stdout)["items"] if g["metadata"]["name"] == grant]
    return int((found.get("status") or {}).get("redemptions", 0))


@pytest.fixture
def east(skupper: Skupper) -> Skupper:
    """east accepts links, so it holds every one of its own credentials."""
    skupper.run("site", "create", "east", "-n", "east", "--enable-link-access")
    return skupper


# --- 1. a hostile grant server chooses nothing ----------------------------------------------


def _secret_named(to: str) -> Callable[[GrantServer], Answer]:
    def make(server: GrantServer) -> Answer:
        def answer(name: str) -> Documents:
            documents = server.honest(name)
            documents[0]["metadata"]["name"] = to
            documents[1]["spec"]["tlsCredentials"] = to
            return documents

        return answer

    return make


def _links_named(*names: str) -> Callable[[GrantServer], Answer]:
    def make(server: GrantServer) -> Answer:
        def answer(name: str) -> Documents:
            secret, link = server.honest(name)
            return [secret, *({**link, "metadata": {"name": n}} for n in names)]

        return answer

    return make


def _link_credentials(to: str) -> Callable[[GrantServer], Answer]:
    def make(server: GrantServer) -> Answer:
        def answer(name: str) -> Documents:
            documents = server.honest(name)
            documents[1]["spec"]["tlsCredentials"] = to
            return documents

        return answer

    return make


HOSTILE: dict[str, tuple[Callable[[GrantServer], Answer], str]] = {
    "Secret named skupper-site-ca": (_secret_named("skupper-site-ca"),
                                     'Secret is named "skupper-site-ca"'),
    "Secret named skupper-grant-server": (_secret_named("skupper-grant-server"),
                                          'Secret is named "skupper-grant-server"'),
    "Secret of another name": (_secret_named("someone-else"), 'Secret is named "someone-else"'),
    "Link named skupper-site-ca": (_links_named("skupper-site-ca"), "Links are named"),
    "Link of another name": (_links_named("east-own-link"), 'Links are named "east-own-link"'),
    "two Links of one name": (_links_named("x", "x"), "Links are named"),
    "Link using the site CA": (_link_credentials("skupper-site-ca"),
                               'names the Secret "skupper-site-ca"'),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_grant_server_cannot_write_the_sites_secrets(
    east: Skupper, grant_server: GrantServer, tmp_path: Path, case: str
) -> None:
    make, fragment = HOSTILE[case]
    grant_server.answer = make(grant_server)
    before = secrets_snapshot(east, "east")
    assert {"skupper-site-ca", "skupper-site-server"} <= set(before)

    done = east.run("access-token", "redeem", str(grant_server.token(tmp_path / "t.yaml")),
                    "-n", "east", check=False)
    refused(done, fragment, "failed")
    assert len(grant_server.requests) == 1
    assert secrets_snapshot(east, "east") == before
    assert links(east, "east") == []
    # The site is unharmed: still Ready, with the CA it had.
    assert site(east, "east")["status"]["status"] == "Ready"


def test_a_hostile_grant_server_cannot_plant_a_credential_the_site_has_not_made_yet(
    skupper: Skupper, grant_server: GrantServer, tmp_path: Path
) -> None:
    # Without link access east has no grant server CA yet; a Secret of that name planted
    # now would become the CA of every token east issues later.
    skupper.run("site", "create", "east", "-n", "east")
    grant_server.answer = _secret_named("skupper-grant-server-ca")(grant_server)
    before = secrets_snapshot(skupper, "east")
    assert "skupper-grant-server-ca" not in before
    done = skupper.run("access-token", "redeem", str(grant_server.token(tmp_path / "t.yaml")),
                       "-n", "east", check=False)
    refused(done, 'Secret is named "skupper-grant-server-ca"')
    assert secrets_snapshot(skupper, "east") == before
    skupper.run("site", "update", "-n", "east", "--enable-link-access")
    made = secrets_snapshot(skupper, "east")["skupper-grant-server-ca"]
    assert made["tls.crt"] != grant_server.site_ca.cert_pem


def test_an_existing_link_of_the_answers_name_is_not_replaced(
    east: Skupper, grant_server: GrantServer, tmp_path: Path
) -> None:
    name = f"west-{uuid.uuid4()}"
    grant_server.answer = lambda requested: grant_server.honest(requested)
    first = east.run("access-token", "redeem", str(grant_server.token(tmp_path / "a.yaml", name)),
                     "-n", "east", "--timeout", "1s", check=False)
    assert first.returncode != 0  # nothing listens at the Link's endpoint; the Link stays
    (kept,) = links(east, "east")
    before = secrets_snapshot(east, "east")

    done = east.run("access-token", "redeem", str(grant_server.token(tmp_path / "b.yaml", name)),
                    "-n", "east", check=False)
    refused(done, f'A link named "{name}" already exists')
    assert len(grant_server.requests) == 1  # refused before the token was spent
    assert secrets_snapshot(east, "east") == before
    assert [link["metadata"]["uid"] for link in links(east, "east")] == [kept["metadata"]["uid"]]


# --- 1. a renamed token is refused before it is spent ---------------------------------------


@pytest.mark.parametrize("renamed", ["skupper-site-ca", "skupper-site-server",
                                     "skupper-grant-server-ca", "skupper-added-later"])
def test_a_token_renamed_to_a_site_credential_is_refused_at_redeem(
    east: Skupper, tmp_path: Path, renamed: str
) -> None:
    east.run("site", "create", "west", "-n", "west", "--enable-link-access")
    file = tmp_path / "token.yaml"
    grant = issue(east, file)
    token = yaml.safe_load(file.read_text())
    token["metadata"]["name"] = renamed
    file.write_text(yaml.safe_dump(token))
    before = secrets_snapshot(east, "east")

    done = east.run("access-token", "redeem", str(file), "-n", "east", check=False)
    refused(done, f'metadata.name "{renamed}"', "reserved for the site's own credentials")
    assert secrets_snapshot(east, "east") == before
    assert links(east, "east") == []
    assert redemptions(east, grant) == 0
    # After a restart east is still itself: Ready, same CA.
    east.run("system", "stop", "-n", "east")
    east.run("system", "start", "-n", "east")
    assert site(east, "east")["status"]["status"] == "Ready"
    assert secrets_snapshot(east, "east")["skupper-site-ca"] == before["skupper-site-ca"]


def test_a_site_named_skupper_issues_tokens_other_sites_redeem(
    skupper: Skupper, tmp_path: Path
) -> None:
    skupper.run("site", "create", "skupper-hq", "-n", "hq", "--enable-link-access")
    skupper.run("site", "create", "east", "-n", "east")
    file = tmp_path / "token.yaml"
    grant = issue(skupper, file, ns="hq")
    assert grant.startswith("site-skupper-hq-"), grant
    done = skupper.run("access-token", "redeem", str(file), "-n", "east")
    assert f'Link "{grant}" is active.' in done.stdout


def test_a_token_of_a_site_with_a_long_name_redeems(skupper: Skupper, tmp_path: Path) -> None:
    # "<site>-<uuid>" passes 63 characters for a site name of 27 or more; the redeemer
    # once refused every such token.
    long_name = "west-with-a-rather-long-site-name-ok"
    skupper.run("site", "create", long_name, "-n", "west", "--enable-link-access")
    skupper.run("site", "create", "east", "-n", "east")
    file = tmp_path / "token.yaml"
    grant = issue(skupper, file)
    assert grant.startswith(f"{long_name}-") and len(grant) > 63
    done = skupper.run("access-token", "redeem", str(file), "-n", "east")
    assert f'Link "{grant}" is active.' in done.stdout


# --- 1. site status tells the truth about the site's own credentials ------------------------


def _replace_key(skupper: Skupper, ns: str, secret: str, key: str, data: bytes | None) -> Path:
    path = (skupper.namespace_dir(ns) / "secrets" / secret).resolve() / key
    path.unlink()
    if data is None:
        path.mkdir()  # unreadable as a file, even for root
    else:
        path.write_bytes(data)
    return path


OTHER_CA = generate_ca("someone else's CA")
LEAF = issue_certificate(OTHER_CA, "west", usage="server", hosts=["127.0.0.1"])

BROKEN_CA: dict[str, tuple[dict[str, bytes | None], str]] = {
    "replaced by a leaf and its key": ({"tls.crt": LEAF.cert_pem, "tls.key": LEAF.key_pem},
                                       "not a CA certificate"),
    "a key that does not match": ({"tls.key": OTHER_CA.key_pem}, "does not match"),
    "a garbage certificate": ({"tls.crt": b"not a certificate"}, "does not parse"),
    "an unreadable key": ({"tls.key": None}, "cannot be read"),
}


@pytest.mark.parametrize("case", list(BROKEN_CA))
def test_a_broken_site_ca_makes_the_site_not_ready_and_is_not_regenerated(
    west: Skupper, tmp_path: Path, case: str
) -> None:
    changes, fragment = BROKEN_CA[case]
    west.run("system", "stop")
    for key, data in changes.items():
        _replace_key(west, "default", "skupper-site-ca", key, data)
    readable = all(data is not None for data in changes.values())
    broken = secrets_snapshot(west, "default")["skupper-site-ca"] if readable else None

    done = west.run("system", "start", check=False)
    refused(done, "skupper-site-ca", fragment)
    (row,) = table(west.run("site", "status").stdout)
    assert row["STATUS"] != "Ready", row
    assert "skupper-site-ca" in row["MESSAGE"] and fragment in row["MESSAGE"], row
    status = site(west, "default")["status"]
    assert status["status"] == "Error" and status["endpoints"] == []
    if broken is not None:
        # Kept for a person to restore: a new CA would break every link it issued.
        assert secrets_snapshot(west, "default")["skupper-site-ca"] == broken
    # It issues no tokens meanwhile, in one line and at once.
    refused(west.run("access-token", "issue", str(tmp_path / "t.yaml"), check=False),
            "cannot issue tokens", "skupper-site-ca")
    assert not (tmp_path / "t.yaml").exists()


def test_a_broken_server_certificate_is_reissued(west: Skupper) -> None:
    west.run("system", "stop")
    _replace_key(west, "default", "skupper-site-server", "tls.key", OTHER_CA.key_pem)
    ca_before = secrets_snapshot(west, "default")["skupper-site-ca"]
    west.run("system", "start")
    assert site(west, "default")["status"]["status"] == "Ready"
    after = secrets_snapshot(west, "default")
    assert after["skupper-site-ca"] == ca_before
    assert after["skupper-site-server"]["tls.key"] != OTHER_CA.key_pem


# --- 2. access-token issue never replaces what is not a regular file ------------------------


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _char_device(path: Path) -> None:
    os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # /dev/null's numbers, in tmp


def _link_to_stdout(path: Path) -> None:
    os.symlink("/proc/self/fd/1", path)


def _link_to_file(path: Path) -> None:
    (path.parent / "target.yaml").write_text("someone else's\n")
    os.symlink(path.parent / "target.yaml", path)


DESTINATIONS = {
    "a FIFO": (_fifo, "it is not a regular file (a FIFO)"),
    "a character device": (_char_device, "it is not a regular file (a character device)"),
    "a link to /proc/self/fd/1": (_link_to_stdout, "it is a symbolic link"),
    "a link to a file": (_link_to_file, "it is a symbolic link"),
}


def _grant_count(skupper: Skupper) -> int:
    done = skupper.run("access-grant", "status", "-o", "json")
    return len(json.loads(done.stdout)["items"])


@pytest.mark.parametrize("kind", list(DESTINATIONS))
def test_issue_refuses_a_destination_that_is_not_a_regular_file(
    west: Skupper, tmp_path: Path, kind: str
) -> None:
    make, fragment = DESTINATIONS[kind]
    folder = tmp_path / "out"
    folder.mkdir()
    path = folder / "token.yaml"
    make(path)
    before = {p.name: (p.lstat().st_mode, p.lstat().st_ino) for p in folder.iterdir()}
    done = west.run("access-token", "issue", str(path), check=False)
    line = refused(done, f"Cannot write token file {path}: {fragment}")
    assert line.endswith("Give a file name, or - for standard output.")
    assert done.returncode == 1
    assert {p.name: (p.lstat().st_mode, p.lstat().st_ino) for p in folder.iterdir()} == before
    assert _grant_count(west) == 0


def test_issue_to_proc_self_fd_is_refused_and_dash_still_works(west: Skupper) -> None:
    refused(west.run("access-token", "issue", "/proc/self/fd/1", check=False),
            "it is a symbolic link")
    refused(west.run("access-token", "issue", "/dev/stdout", check=False),
            "it is a symbolic link")
    assert stat.S_ISCHR(os.lstat("/dev/null").st_mode)
    done = west.run("access-token", "issue", "-")
    assert yaml.safe_load(done.stdout)["kind"] == "AccessToken"
    assert _grant_count(west) == 1


# --- 4. numbers in range --------------------------------------------------------------------


@pytest.mark.parametrize(("option", "value"), [
    ("--cost", "1000001"), ("--cost", "2000000"), ("--cost", "9" * 5000), ("--cost", "0"),
    ("--redemptions-allowed", "1000001"), ("--redemptions-allowed", "9" * 5000),
])
def test_issue_bounds_every_number(west: Skupper, tmp_path: Path, option: str,
                                   value: str) -> None:
    done = west.run("access-token", "issue", str(tmp_path / "t.yaml"), option, value,
                    check=False)
    line = refused(done, f"Invalid value for {option}", "whole number from 1 to 1000000")
    assert len(line) < 200
    assert done.returncode == 2
    assert not (tmp_path / "t.yaml").exists() and _grant_count(west) == 0


def test_issue_accepts_the_largest_cost(west: Skupper, tmp_path: Path) -> None:
    issue(west, tmp_path / "t.yaml", "--cost", "1000000", "--redemptions-allowed", "1000000",
          ns="default")
    assert yaml.safe_load((tmp_path / "t.yaml").read_text())["spec"]["linkCost"] == 1_000_000


@pytest.mark.parametrize(("cost", "fragment"), [
    ("2000000", "spec.linkCost must be a whole number from 1 to 1000000"),
    ("9" * 5000, "a number in it has far too many digits"),
    ("1.5", "spec.linkCost must be a whole number"),
    ("true", "spec.linkCost must be a whole number"),
    ("'7'", "spec.linkCost must be a whole number"),
])
def test_redeem_bounds_the_tokens_link_cost(
    east: Skupper, tmp_path: Path, cost: str, fragment: str
) -> None:
    east.run("site", "create", "west", "-n", "west", "--enable-link-access")
    file = tmp_path / "token.yaml"
    grant = issue(east, file)
    text = re.sub(r"linkCost: 1\n", f"linkCost: {cost}\n", file.read_text())
    file.write_text(text)
    before = secrets_snapshot(east, "east")
    done = east.run("access-token", "redeem", str(file), "-n", "east", check=False)
    line = refused(done, fragment)
    assert "Traceback" not in done.stderr and len(line) < 300
    assert redemptions(east, grant) == 0
    assert secrets_snapshot(east, "east") == before and links(east, "east") == []


# --- 9. a link that does not come up; URLs with user info -----------------------------------


def test_a_link_that_never_comes_up_is_kept_and_the_last_line_says_why(
    east: Skupper, grant_server: GrantServer, tmp_path: Path
) -> None:
    port = free_port()  # nothing listens there
    grant_server.answer = lambda name: grant_server.honest(name, port=port)
    file = grant_server.token(tmp_path / "t.yaml")
    name = yaml.safe_load(file.read_text())["metadata"]["name"]

    done = east.run("access-token", "redeem", str(file), "-n", "east", "--timeout", "2s",
                    check=False)
    line = refused(done, f'Link "{name}" was created but is not active yet',
                   f"127.0.0.1:{port}", "keeps retrying", "skupper link status")
    assert done.returncode == 1
    assert line == done.stderr.strip().splitlines()[-1]
    # What it said it kept: the Link and its credential.
    (link,) = links(east, "east")
    assert link["metadata"]["name"] == name
    assert name in secrets_snapshot(east, "east")
    # And it keeps dialing: the reason stays visible in link status.
    wait_for("link status to show the dial failure",
             lambda: f"127.0.0.1:{port}" in str(links(east, "east")[0]["status"]), 5)
    east.run("link", "delete", name, "-n", "east")
    assert name not in secrets_snapshot(east, "east")


@pytest.mark.parametrize("userinfo", ["u:p@", "admin@", "@", "u:@"])
def test_a_token_url_with_user_info_is_refused(
    east: Skupper, grant_server: GrantServer, tmp_path: Path, userinfo: str
) -> None:
    file = grant_server.token(tmp_path / "t.yaml")
    token = yaml.safe_load(file.read_text())
    token["spec"]["url"] = token["spec"]["url"].replace("https://", f"https://{userinfo}", 1)
    file.write_text(yaml.safe_dump(token))
    before = secrets_snapshot(east, "east")
    done = east.run("access-token", "redeem", str(file), "-n", "east", check=False)
    refused(done, "spec.url carries user information")
    assert grant_server.requests == []
    assert secrets_snapshot(east, "east") == before and links(east, "east") == []
