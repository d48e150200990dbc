"""A newcomer's first hour (issue 12): help like the seed, runnable hints, redeem -."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests_support import Skupper, one_error_line

pytestmark = pytest.mark.e2e

SEED = Path(__file__).resolve().parents[2].parent / "shared" / "seeds" / "access-token-issue.md"


def _words(text: str) -> str:
    return " ".join(text.split())


def test_issue_help_reads_like_the_seed(skupper: Skupper) -> None:
    out = skupper.run("access-token", "issue", "--help").stdout
    assert out.startswith("Usage: skupper access-token issue <file> [options]\n")
    flat = _words(out)
    for sentence in ("Issue a token redeemable for a link to the current site.",
                     "Issue a token that can be redeemed at a remote site for a link to the "
                     "current site.",
                     "This command first creates a grant in order to issue the token.",
                     "The name of the token file.",
                     "# Issue a token skupper access-token issue ~/token.yaml",
                     "# Issue a token with non-default limits skupper access-token issue "
                     "~/token.yaml --expiration-period 24h --redemptions-allowed 3"):
        assert sentence in flat, sentence
    assert re.search(r"--redemptions-allowed <integer>", out)
    assert re.search(r"--expiration-period, --expiration-window <duration>", out)
    assert "at least 1m" in flat
    if SEED.is_file():  # the seed's examples, verbatim
        examples = SEED.read_text().split("## Examples")[1].split("~~~")[1]
        for line in (line.strip() for line in examples.splitlines()):
            if line:
                assert line in out, line


def test_redeem_help_reads_like_its_reference_page(skupper: Skupper) -> None:
    out = skupper.run("access-token", "redeem", "--help").stdout
    assert out.startswith("Usage: skupper access-token redeem <file> [options]\n")
    assert "Redeem a token in order to obtain a link to a remote site." in _words(out)
    assert "The name of the token file." in _words(out)


def test_hints_name_the_namespace(skupper: Skupper) -> None:
    skupper.run("site", "create", "west", "-n", "west")
    done = skupper.fails("access-token", "issue", "-", "-n", "west")
    one_error_line(done, 'You can use "skupper site update --enable-link-access -n west" to '
                         "enable it.")


def test_a_token_from_standard_input_redeems(skupper: Skupper) -> None:
    skupper.run("site", "create", "west", "-n", "west", "--enable-link-access")
    skupper.run("site", "create", "east", "-n", "east")
    issued = skupper.run("access-token", "issue", "-", "-n", "west")
    assert "$ skupper access-token redeem -\n" in issued.stderr
    redeemed = skupper.run("access-token", "redeem", "-", "-n", "east", input=issued.stdout)
    assert re.search(r'Link "[^"]+" is active\.', redeemed.stdout)
    assert "safely delete" not in redeemed.stdout  # no file was read
    # Redeemed again: the working link is reported, never to be deleted.
    again = skupper.fails("access-token", "redeem", "-", "-n", "east", input=issued.stdout)
    line = one_error_line(again, "already exists", "the link is active", "Nothing to do")
    assert "link delete" not in line
    assert "-n east" in line


def test_an_empty_standard_input_is_one_line(skupper: Skupper) -> None:
    skupper.run("site", "create", "east", "-n", "east")
    done = skupper.fails("access-token", "redeem", "-", "-n", "east", input="")
    one_error_line(done, "standard input", "empty")


def test_links_at_a_stopped_site_and_deleting_an_incoming_link(skupper: Skupper,
                                                               tmp_path: Path) -> None:
    from tests_support import table

    skupper.run("site", "create", "west", "-n", "west", "--enable-link-access")
    skupper.run("site", "create", "east", "-n", "east")
    token = tmp_path / "t.yaml"
    issued = skupper.run("access-token", "issue", str(token), "-n", "west").stdout
    grant = re.search(r'Grant "([^"]+)" is ready', issued)
    assert grant is not None
    skupper.run("access-token", "redeem", str(token), "-n", "east")
    (link,) = table(skupper.run("link", "status", "-n", "east").stdout)

    def incoming_at_west() -> list[dict[str, str]]:
        return table(skupper.run("link", "status", "-n", "west").stdout)

    from tests_support import wait_for

    (row,) = wait_for("west lists the incoming link", incoming_at_west, 10)
    assert (row["NAME"], row["DIRECTION"], row["STATUS"]) == (link["NAME"], "incoming", "Ready")
    done = skupper.fails("link", "delete", link["NAME"], "-n", "west")
    line = one_error_line(done, f'Link "{link["NAME"]}" is an incoming link',
                          "site east dialed it", "Delete it at site east")
    assert f'"skupper access-grant revoke {grant.group(1)} -n west"' in line
    skupper.run("system", "stop", "-n", "west")
    (stopped,) = table(skupper.run("link", "status", "-n", "west").stdout)
    assert (stopped["NAME"], stopped["DIRECTION"], stopped["STATUS"]) == (
        link["NAME"], "incoming", "Stopped")
    assert "not running" in stopped["MESSAGE"]


@pytest.mark.parametrize("args", [
    ("site", "status", "--bogus"), ("bogus",), ("access-token", "issue"),
    ("link", "status", "-o", "xml"),
])
def test_command_line_errors_are_one_line(skupper: Skupper, args: tuple[str, ...]) -> None:
    done = skupper.fails(*args)
    assert done.returncode == 2
    one_error_line(done, "--help")


@pytest.mark.parametrize("args", [
    ("site", "create", "Bad_Name"), ("listener", "create", "Bad_Name", "80"),
    ("connector", "delete", "Bad_Name"), ("link", "delete", "Bad_Name"),
    ("link", "status", "Bad_Name"), ("access-grant", "delete", "Bad_Name"),
    ("access-grant", "status", "Bad_Name"), ("site", "status", "-n", "Bad_Name"),
])
def test_an_invalid_name_is_exit_2_wherever_it_comes_from(skupper: Skupper,
                                                          args: tuple[str, ...]) -> None:
    done = skupper.fails(*args)
    assert done.returncode == 2, done.stderr
    one_error_line(done, "Invalid", "Bad_Name")


def test_a_default_host_only_this_machine_reaches_is_called_out(skupper: Skupper) -> None:
    import socket

    from skupper.base.net import only_loopback

    del skupper.env["SKUPPER_LINK_ACCESS_HOST"]
    fqdn = socket.getfqdn()
    done = skupper.run("site", "create", "west", "--enable-link-access", "-n", "west",
                       "--timeout", "60s")
    warnings = [line for line in done.stderr.splitlines() if line.startswith("Warning:")]
    if only_loopback(fqdn):
        (line,) = warnings
        assert f'"{fqdn}"' in line and "--link-access-host" in line
    else:
        assert warnings == []
    # Told where remote sites reach it, the site says nothing.
    quiet = skupper.run("site", "create", "east", "--enable-link-access", "-n", "east",
                        "--link-access-host", "127.0.0.1")
    assert "Warning" not in quiet.stderr


def test_only_loopback() -> None:
    from skupper.base.net import only_loopback

    assert only_loopback("localhost") and only_loopback("127.0.0.1") and only_loopback("::1")
    # TEST-NET-1: a numeric address is parsed, never looked up or sent to.
    assert not only_loopback("192.0.2.10")


def test_a_listener_whose_port_is_taken_says_so_once_and_is_not_left_behind(
    skupper: Skupper,
) -> None:
    import socket

    skupper.run("site", "create", "west")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = skupper.fails("listener", "create", "back", str(port), "--host", "127.0.0.1")
        one_error_line(done, 'Listener "back" was not created', f"127.0.0.1:{port}",
                       "another process holds the port", "pick another port")
    assert skupper.run("listener", "status").stdout.startswith("There are no listeners")


REFDOG = SEED.parents[1] / "reference" / "refdog-2024-06"


@pytest.mark.parametrize("page", [
    "access-token-redeem", "grant-delete", "grant-status", "link-delete", "link-status",
    "site-create", "site-delete", "site-status", "site-update",
])
def test_help_carries_its_reference_pages_description_and_arguments(
    skupper: Skupper, page: str,
) -> None:
    file = REFDOG / f"commands-{page}.md"
    if not file.is_file():
        pytest.skip(f"no refdog page at {file}")
    text = file.read_text()
    description = text.split("<section>", 1)[1].split("</section>", 1)[0].strip()
    command = page.replace("grant-", "access-grant-").split("-", 1)
    if page.startswith("access-token"):
        command = ["access-token", "redeem"]
    elif page.startswith("grant"):
        command = ["access-grant", page.split("-", 1)[1]]
    out = _words(skupper.run(*command, "--help").stdout)
    assert _words(description.splitlines()[0]) in out
    for argument in re.findall(r'<h4 id="(\w+)">\1 <span class="option-info">string, '
                               r'(?:required|optional)', text):
        assert f"<{argument}>" in out or f"[{argument}]" in out, argument
