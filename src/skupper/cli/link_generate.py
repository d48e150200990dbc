"""``skupper link generate`` and ``skupper link revoke``: links without a token, one by one.

The work (a certificate per generated link, the site's record of it, revocation) is in
``controller.generated_links``; this module reads the command line, picks where the
files go and prints. What it prints holds a private key: a file it writes is 0600 from
its first byte (``base.files.write_private``: never through a symbolic link, never into
a device or FIFO), and standard output redirected to a file is made 0600 before the key
is written. The key is never logged.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from skupper.base.errors import SkupperError
from skupper.cli.help import ReferenceCommand
from skupper.cli.names import name_callback
from skupper.cli.options import Target, context_options, duration_value, run, timeout_option

if TYPE_CHECKING:
    from skupper.controller.generated_links import GeneratedLink, Revocation
    from skupper.resources import Resource


@click.command(
    "generate", cls=ReferenceCommand,
    help="Generate a link to the current site, for a remote site that links without a "
         "token.\n\nPrints a Secret holding a client certificate issued for this one link, "
         "and the Link that uses it. Apply them at the remote site (\"skupper system apply "
         "-f\", or \"kubectl apply -f\" on Kubernetes). Each generated link has its own "
         "certificate: \"skupper link revoke <name>\" cuts off that link alone.",
    short_help="Generate a link to the current site.",
    arguments={"file": "Where to write the link (created 0600: it holds a private key). "
                       "Without it, or with -, the link goes to standard output."},
    examples=[("Generate a link for site east, to apply there",
               "skupper link generate --name east > east-link.yaml"),
              ("Write it to a file, with a certificate valid for 30 days",
               "skupper link generate east-link.yaml --name east --expires 720h")])
@click.argument("file", required=False, metavar="[file]")
@click.option("--name", default=None, metavar="<name>",
              help="The name of the link and of its secret (default: link-<site name>).")
@click.option("--cost", default="1", show_default=True, metavar="<integer>",
              help="The configured expense of sending traffic over the link (1 to 1000000).")
@click.option("--expires", default=None, metavar="<duration>",
              help="How long the link's certificate is valid, at least 1m (default: the "
                   "site's link-certificate-validity setting, 5 years unless changed).")
@click.option("-o", "--output", type=click.Choice(["yaml", "json"]), default="yaml",
              show_default=True, help="Print the resources as yaml or json.")
@context_options
def generate(file: str | None, name: str | None, cost: str, expires: str | None, output: str,
             target: Target) -> None:
    from skupper.base.errors import UsageError
    from skupper.cli.values import bounded_int
    from skupper.controller.generated_links import MIN_VALIDITY_SECONDS, check_name
    from skupper.resources.model import MAX_LINK_COST

    link_cost = bounded_int(cost, "--cost", 1, MAX_LINK_COST)
    validity = None
    if expires is not None:
        validity = duration_value(expires, "--expires")
        if validity < MIN_VALIDITY_SECONDS:
            raise UsageError("Invalid value for --expires", f"{expires!r} is under a minute")
    if name is not None:
        check_name(name)
    destination = _destination(file)  # before anything is issued
    generated = run(_generate(target, name, link_cost, validity, output, destination))
    from skupper.cli.hints import with_namespace
    from skupper.cli.options import namespace_for_hints

    done = with_namespace(
        f'Link "{generated.name}" generated; its certificate expires at {generated.expires}. '
        f'Revoke it alone with "skupper link revoke {generated.name}".', namespace_for_hints())
    if destination is None:
        click.echo(done, err=True)  # standard output holds the files and nothing else
    else:
        click.echo(f"Link file {file} created. {done}")


def _cannot_write(file: str, why: str, hint: str = "") -> SkupperError:
    return SkupperError(f"Cannot write link file {file}", why, hint)


def _destination(file: str | None) -> Path | None:
    """The file to write (None: standard output), refused before anything is issued."""
    import os

    from skupper.base.files import NotARegularFile, regular_file_kind

    if file is None or file == "-":
        _private_stdout()
        return None
    path = Path(file).expanduser()
    try:
        kind = regular_file_kind(path)
    except OSError as exc:
        raise _cannot_write(file, exc.strerror or str(exc)) from None
    if kind is not None and kind != "a regular file":
        raise _cannot_write(file, NotARegularFile(path, kind).strerror or kind,
                            "Give a file name, or - for standard output.")
    if not path.parent.is_dir():
        raise _cannot_write(file, f"the folder {path.parent} does not exist",
                            "Create it or choose another path.")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise _cannot_write(file, f"the folder {path.parent} is not writable")
    return path


def _private_stdout() -> None:
    """Standard output redirected to a file (``> link.yaml``) gets a key: make it 0600.

    The shell created the file with the umask (often 0644) before this ran; the mode is
    tightened before any byte is written. A terminal or a pipe is left alone.
    """
    import os
    import stat

    try:
        fd = sys.stdout.fileno()
        mode = os.fstat(fd).st_mode
    except (OSError, ValueError, AttributeError):  # no file descriptor (captured output)
        return
    if not stat.S_ISREG(mode) or not stat.S_IMODE(mode) & 0o077:
        return
    try:
        os.fchmod(fd, 0o600)
    except OSError as exc:
        raise SkupperError("Cannot write the link to standard output",
                           "it is a file others may read, and its mode cannot be made 0600 "
                           f"({exc.strerror or exc})",
                           "Give a file name to write the link to instead.") from None


async def _generate(target: Target, name: str | None, cost: int, validity: float | None,
                    output: str, destination: Path | None) -> GeneratedLink:
    from skupper.cli.session import open_session, require_site
    from skupper.controller.generated_links import check_name, default_name, forget, generate

    async with open_session(target) as session:
        site = require_site(session)
        site_name = str(site["metadata"]["name"])
        if name is None:
            name = default_name(site_name)
            check_name(name, "--name (the default, link-<site name>)")
        generated = await generate(session.store, session.platform.open_secrets(), site,
                                   name, cost, validity)
        try:
            _deliver(generated.documents, output, destination)
        except BaseException:
            # The certificate never left this process: the site forgets it again.
            await forget(session.store, site_name, generated.serial)
            raise
    return generated


def _deliver(documents: list[Resource], output: str, destination: Path | None) -> None:
    from skupper.base.files import NotARegularFile, write_private

    text = render(documents, output)
    if destination is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        write_private(destination, text)
    except NotARegularFile as exc:
        raise _cannot_write(str(destination), exc.strerror or "") from None
    except OSError as exc:
        raise _cannot_write(str(destination), exc.strerror or str(exc)) from None


def render(documents: list[Resource], output: str) -> str:
    """YAML documents separated by ``---`` (what kubectl apply -f takes), or a JSON List."""
    import json

    from skupper.cli.output import to_yaml

    if output == "json":
        return json.dumps({"apiVersion": "v1", "kind": "List", "items": documents},
                          indent=2) + "\n"
    return "---\n".join(to_yaml(document) for document in documents)


@click.command(
    "revoke", cls=ReferenceCommand,
    help="Revoke a generated link: its certificate is refused from now on and the link "
         "closes; the remote site stops dialing it. Every other link stays up.",
    short_help="Revoke one generated link.",
    arguments={"name": 'The name the link was generated with ("skupper link generate '
                       '--name").'},
    examples=[("Cut off the site that applied the generated link east",
               "skupper link revoke east")])
@click.argument("name", metavar="<name>", callback=name_callback("link"))
@timeout_option()
@context_options
def revoke(name: str, timeout: str, target: Target) -> None:
    wait = duration_value(timeout, "--timeout")
    revocation = run(_revoke(target, name, wait))
    if revocation.already:
        click.echo(f'Link "{name}" was revoked already, at {revocation.entry.get("revoked")}.')
    else:
        click.echo(f'Link "{name}" is revoked; its certificate is refused from now on.')


async def _revoke(target: Target, name: str, wait: float) -> Revocation:
    from skupper.cli.session import open_session, require_site, wait_until
    from skupper.controller.generated_links import revoke as revoke_link

    async with open_session(target) as session:
        site_name = str(require_site(session)["metadata"]["name"])
        revocation = await revoke_link(session.store, site_name, name)
        if not session.platform.running():
            return revocation  # no link is up; the daemon refuses it once it starts
        serial = revocation.entry.get("serial")

        def closed(site: Resource) -> bool:
            incoming = (site.get("status") or {}).get("incomingLinks") or []
            return not any(isinstance(entry, dict) and entry.get("certificate") == serial
                           and entry.get("operational", True) for entry in incoming)

        await wait_until(session, "Site", site_name, closed, wait,
                         what=f'Closing the revoked link "{name}"', fail_on_error=False)
        return revocation
