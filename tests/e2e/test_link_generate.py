"""``skupper link generate`` and ``skupper link revoke`` end to end, with real daemons.

Sites made from YAML with ``system apply -f``; one with link access generates links; each
receiving site applies the generated Secret and Link with ``system apply -f -`` (no token),
and its daemon dials. Every wait is bounded; only 127.0.0.1 is dialed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import stat
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from test_services import echo, echo_works, serve

from skupper.store.sqlite import SqliteStore
from tests_support import SKUPPER, Skupper, free_port, table, wait_for

pytestmark = pytest.mark.e2e


def apply_generated(skupper: Skupper, ns: str, text: str) -> str:
    """Apply a generated Secret and Link at site ``ns`` with ``system apply -f -``."""
    docs = [d for d in yaml.safe_load_all(text) if d]
    (link,) = [d for d in docs if d["kind"] == "Link"]
    name = str(link["metadata"]["name"])
    # No wait: some tests hand a file to a site the issuer then refuses.
    done = skupper.run("system", "apply", "-f", "-", "--wait", "none", "-n", ns, input=text)
    assert f'Link "{name}" created' in done.stdout, done.stdout
    return name


def rows(skupper: Skupper, ns: str) -> dict[tuple[str, str], dict[str, str]]:
    """``link status`` rows by (NAME, DIRECTION)."""
    return {(r["NAME"], r["DIRECTION"]): r
            for r in table(skupper.run("link", "status", "-n", ns).stdout)}


def state(skupper: Skupper, ns: str, name: str, direction: str) -> str:
    row = rows(skupper, ns).get((name, direction))
    return row["STATUS"] if row else "-"


def site_status(skupper: Skupper, ns: str) -> dict[str, Any]:
    site = json.loads(skupper.run("site", "status", "-n", ns, "-o", "json").stdout)
    return dict(site.get("status") or {})


def inter_router_port(skupper: Skupper, ns: str) -> str:
    (endpoint,) = [e for e in site_status(skupper, ns)["endpoints"]
                   if e["name"] == "inter-router"]
    return str(endpoint["port"])


def follow_port(skupper: Skupper, ns: str, before: str, peers: dict[str, str]) -> None:
    """After a restart of ``ns``: if another process took its port meanwhile (the machine
    is shared; the daemon then moves and says so), point the peers' Links (namespace ->
    Link name) at the new port, as their operators would. The tests are about what the
    certificates may do, not about ports."""
    after = inter_router_port(skupper, ns)
    if after == before:
        return

    async def repoint(peer: str, name: str) -> None:
        store = SqliteStore(skupper.namespace_dir(peer) / "store.db")
        try:
            link = await store.get("Link", name)
            for endpoint in link["spec"]["endpoints"]:
                if endpoint["name"] == "inter-router":
                    endpoint["port"] = after
            await store.update(link)
        finally:
            store.close()

    for peer, name in peers.items():
        asyncio.run(repoint(peer, name))


def restart(skupper: Skupper, ns: str, peers: dict[str, str]) -> None:
    before = inter_router_port(skupper, ns)
    skupper.run("system", "stop", "-n", ns)
    skupper.run("system", "start", "-n", ns)
    follow_port(skupper, ns, before, peers)


def refusals(skupper: Skupper, ns: str, link: str) -> int:
    log = (skupper.namespace_dir(ns) / "logs" / "daemon.log").read_text(errors="replace")
    return sum(1 for line in log.splitlines() if f"link {link} " in line and "refused" in line)


@pytest.fixture
def three(skupper: Skupper) -> Skupper:
    """west with link access; east and south, which link to it without a token.

    Each site is one YAML document applied with ``system apply -f``, as sites as code are.
    """
    for ns, spec in (("west", "  linkAccess: default\n"), ("east", ""), ("south", "")):
        site = f"apiVersion: skupper.io/v2alpha1\nkind: Site\nmetadata:\n  name: {ns}\n"
        done = skupper.run("system", "apply", "-f", "-", "-n", ns,
                           input=site + (f"spec:\n{spec}" if spec else ""))
        assert f'Site "{ns}" created' in done.stdout, done.stdout
    return skupper


def test_two_generated_links_one_revoked_alone_the_other_stays_up(
    three: Skupper, tmp_path: Path
) -> None:
    skupper = three
    printed = skupper.run("link", "generate", "--name", "to-east", "-n", "west")
    assert printed.stderr.startswith('Link "to-east" generated; its certificate expires at ')
    assert '"skupper link revoke to-east -n west"' in printed.stderr
    file = tmp_path / "to-south.yaml"
    written = skupper.run("link", "generate", str(file), "--name", "to-south", "--cost", "3",
                          "-n", "west")
    assert written.stdout.startswith(f"Link file {file} created. ")
    assert apply_generated(skupper, "east", printed.stdout) == "to-east"
    assert apply_generated(skupper, "south", file.read_text()) == "to-south"

    for ns, name in (("east", "to-east"), ("south", "to-south")):
        wait_for(f"{ns}'s generated link to be Ready",
                 lambda ns=ns, name=name: state(skupper, ns, name, "outgoing") == "Ready", 15)

    def both_incoming() -> dict[tuple[str, str], dict[str, str]] | None:
        found = rows(skupper, "west")
        ready = all(found.get((n, "incoming"), {}).get("STATUS") == "Ready"
                    for n in ("to-east", "to-south"))
        return found if ready else None

    at_west = wait_for("west to see both incoming links", both_incoming, 10)
    serials = {e["name"]: e["serial"] for e in site_status(skupper, "west")["generatedLinks"]}
    assert at_west[("to-east", "incoming")]["REMOTE SITE"] == "east"
    assert at_west[("to-east", "incoming")]["MESSAGE"] == (
        f"incoming link from site east (generated link to-east, certificate "
        f"{serials['to-east']})")
    assert rows(skupper, "south")[("to-south", "outgoing")]["COST"] == "3"
    # Each certificate is bound to the site that first linked with it.
    def bound() -> dict[str, str] | None:
        found = {e["name"]: e.get("remoteSiteName", "") for e in
                 site_status(skupper, "west")["generatedLinks"] if e.get("remoteSiteId")}
        return found if len(found) == 2 else None

    assert wait_for("the bindings to be written", bound, 5) == {
        "to-east": "east", "to-south": "south"}

    # Traffic: a server at west, reached from east and from south over their links.
    server, server_port = serve(echo)
    try:
        skupper.run("connector", "create", "echo", str(server_port), "-n", "west")
        ports = {}
        for ns in ("east", "south"):
            ports[ns] = free_port()
            skupper.run("listener", "create", "echo", str(ports[ns]), "-n", ns,
                        "--wait", "ready")
            wait_for(f"echo through {ns}'s generated link", lambda ns=ns: echo_works(
                ports[ns]), 10)
        _revoke_one_keep_the_other(skupper, ports)
    finally:
        server.shutdown()
        server.server_close()


def _revoke_one_keep_the_other(skupper: Skupper, ports: dict[str, int]) -> None:
    """Revoke east's generated link: it goes down for good, south's carries on."""
    revoked = skupper.run("link", "revoke", "to-east", "-n", "west")
    revoked_at = time.monotonic()
    assert revoked.stdout == 'Link "to-east" is revoked; its certificate is refused from now on.\n'
    assert revoked.stderr == ""

    def east_says_revoked() -> bool:
        row = rows(skupper, "east").get(("to-east", "outgoing"), {})
        return row.get("STATUS") == "Error" and "revoked" in row.get("MESSAGE", "")

    wait_for("east's link to say it was revoked", east_says_revoked, 2.0, 0.02)
    assert time.monotonic() - revoked_at <= 2.0
    after = rows(skupper, "west")
    assert after[("to-east", "incoming")]["STATUS"] == "Revoked"
    assert after[("to-south", "incoming")]["STATUS"] == "Ready"
    assert state(skupper, "south", "to-south", "outgoing") == "Ready"

    # It does not come back: longer than the dialer's whole backoff cap, nothing redials.
    settled = refusals(skupper, "west", "to-east")
    time.sleep(2.5)
    assert east_says_revoked()
    assert refusals(skupper, "west", "to-east") == settled <= 2
    assert state(skupper, "south", "to-south", "outgoing") == "Ready"
    assert state(skupper, "west", "to-south", "incoming") == "Ready"
    assert echo_works(ports["south"])
    assert not echo_works(ports["east"])  # no route to west's connector any more

    # A restart of west keeps the revocation; the other link comes back by itself.
    restart(skupper, "west", {"east": "to-east", "south": "to-south"})
    wait_for("south's link to come back", lambda: state(
        skupper, "west", "to-south", "incoming") == "Ready", 15)
    assert state(skupper, "west", "to-east", "incoming") == "Revoked"
    assert east_says_revoked()


def test_a_generated_link_speaks_for_the_first_site_only(three: Skupper) -> None:
    skupper = three
    text = skupper.run("link", "generate", "--name", "shared", "-n", "west").stdout
    apply_generated(skupper, "east", text)
    wait_for("east's link to be Ready", lambda: state(skupper, "east", "shared", "outgoing")
             == "Ready", 15)
    apply_generated(skupper, "south", text)  # the same file, handed on to another site

    def refused_at_south() -> str | None:
        row = rows(skupper, "south").get(("shared", "outgoing"), {})
        return row["MESSAGE"] if row.get("STATUS") == "Error" else None

    message = wait_for("south to be refused", refused_at_south, 15)
    assert "belongs to site east" in message, message
    assert state(skupper, "east", "shared", "outgoing") == "Ready"

    # The binding is durable: after a restart of west, whichever dials first, only east
    # gets in.
    restart(skupper, "west", {"east": "shared", "south": "shared"})
    wait_for("east's link to come back", lambda: state(skupper, "east", "shared", "outgoing")
             == "Ready", 15)
    time.sleep(2.5)  # south has redialed by now (the backoff is capped at 2 s)
    assert "belongs to site east" in str(refused_at_south())
    assert state(skupper, "east", "shared", "outgoing") == "Ready"


def test_the_file_is_private_and_the_certificate_expires_as_asked(
    skupper: Skupper, tmp_path: Path
) -> None:
    skupper.run("site", "create", "west", "--enable-link-access")
    file = tmp_path / "link.yaml"
    skupper.run("link", "generate", str(file), "--name", "two-hours", "--expires", "2h")
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    secret, link = [d for d in yaml.safe_load_all(file.read_text()) if d]
    assert (secret["kind"], link["kind"]) == ("Secret", "Link")
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    expected = datetime.now(UTC) + timedelta(hours=2)
    assert abs(cert.not_valid_after_utc - expected) < timedelta(minutes=1)
    (entry,) = site_status(skupper, "default")["generatedLinks"]
    assert entry["expires"] == cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert entry["serial"] == format(cert.serial_number, "x")

    # Standard output redirected to a file the shell made 0644: 0600 before the key lands.
    redirected = tmp_path / "redirected.yaml"
    redirected.touch(mode=0o644)
    os.chmod(redirected, 0o644)
    with redirected.open("w") as out:
        subprocess.run([SKUPPER, "link", "generate", "--name", "redirected"], env=skupper.env,
                       stdout=out, stderr=subprocess.PIPE, check=True, timeout=60)
    assert stat.S_IMODE(redirected.stat().st_mode) == 0o600
    assert "BEGIN" not in redirected.read_text()  # base64 in a Secret, as upstream writes it
    assert [d["kind"] for d in yaml.safe_load_all(redirected.read_text()) if d] == [
        "Secret", "Link"]

    # -o json: one List, as kubectl apply -f takes it.
    listed = json.loads(skupper.run("link", "generate", "--name", "json", "-o", "json").stdout)
    assert listed["kind"] == "List"
    assert [item["kind"] for item in listed["items"]] == ["Secret", "Link"]

    # A symbolic link as the destination is refused, and nothing is issued or recorded.
    target = tmp_path / "elsewhere"
    target.write_text("keep")
    pointer = tmp_path / "pointer.yaml"
    pointer.symlink_to(target)
    before = site_status(skupper, "default")["generatedLinks"]
    refused = skupper.fails("link", "generate", str(pointer), "--name", "via-link")
    assert refused.stderr.count("\n") == 1 and "symbolic link" in refused.stderr
    assert target.read_text() == "keep" and pointer.is_symlink()
    assert site_status(skupper, "default")["generatedLinks"] == before


def test_every_refusal_is_one_line_and_records_nothing(three: Skupper) -> None:
    skupper = three
    skupper.run("link", "generate", "--name", "taken", "-n", "west")
    cases = [
        (("link", "revoke", "nope", "-n", "west"), 1, 'Error: No generated link "nope": site '
         '"west" has generated no link of that name. List links with "skupper link status -n '
         'west".'),
        (("link", "generate", "--name", "taken", "-n", "west"), 1,
         'Error: A generated link named "taken" already exists'),
        (("link", "generate", "-n", "east"), 1,
         'Error: Generating a link failed: link access is not enabled at site "east". Enable '
         'it with "skupper site update --enable-link-access -n east".'),
        (("link", "generate", "--name", "skupper-site-ca", "-n", "west"), 2,
         "Error: Invalid value for --name"),
        (("link", "generate", "--expires", "10s", "-n", "west"), 2,
         "Error: Invalid value for --expires: '10s' is under a minute"),
        (("link", "generate", "--cost", "0", "-n", "west"), 2, "Error: Invalid value for --cost"),
        (("link", "delete", "taken", "-n", "west"), 1,
         'Error: Link "taken" is a link generated here'),
    ]
    for args, code, start in cases:
        done = skupper.fails(*args)
        assert done.returncode == code, (args, done.returncode, done.stderr)
        assert done.stderr.startswith(start), (args, done.stderr)
        assert done.stderr.count("\n") == 1 and done.stdout == "", (args, done)
    assert "skupper link revoke taken -n west" in skupper.fails(
        "link", "delete", "taken", "-n", "west").stderr
    assert [e["name"] for e in site_status(skupper, "west")["generatedLinks"]] == ["taken"]
    assert "generatedLinks" not in site_status(skupper, "east")
    # Unused, it is listed at the issuing site as waiting for a site to apply it.
    row = rows(skupper, "west")[("taken", "incoming")]
    assert row["STATUS"] == "Pending"
    assert row["MESSAGE"].startswith("generated link, not applied at any site yet")


def test_a_link_revoked_while_the_site_is_stopped_stays_out_once_it_starts(
    skupper: Skupper,
) -> None:
    skupper.run("site", "create", "west", "-n", "west", "--enable-link-access")
    skupper.run("site", "create", "east", "-n", "east")
    apply_generated(skupper, "east", skupper.run(
        "link", "generate", "--name", "later", "-n", "west").stdout)
    wait_for("east's link to be Ready", lambda: state(skupper, "east", "later", "outgoing")
             == "Ready", 15)
    before = inter_router_port(skupper, "west")
    skupper.run("system", "stop", "-n", "west")
    done = skupper.run("link", "revoke", "later", "-n", "west")
    assert done.stdout == 'Link "later" is revoked; its certificate is refused from now on.\n'
    assert state(skupper, "west", "later", "incoming") == "Stopped"  # as last seen
    skupper.run("system", "start", "-n", "west")
    follow_port(skupper, "west", before, {"east": "later"})

    def refused() -> bool:
        row = rows(skupper, "east").get(("later", "outgoing"), {})
        return row.get("STATUS") == "Error" and "revoked" in row.get("MESSAGE", "")

    wait_for("east to be told its link is revoked", refused, 15)
    assert state(skupper, "west", "later", "incoming") == "Revoked"
