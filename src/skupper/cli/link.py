"""``skupper link``: status and delete of the links of the current site.

Link names, remote site names and messages come from other sites (through the hello
and the Site status): every cell is escaped before it reaches the terminal.
"""

from __future__ import annotations

from typing import Any

import click

from skupper.base.errors import SkupperError
from skupper.cli.help import ReferenceCommand
from skupper.cli.names import name_callback
from skupper.cli.options import Target, context_options, output_option, run


@click.group(help="Generate, inspect, revoke and delete links to remote sites.")
def link() -> None:
    pass


def _add_generated_link_commands() -> None:
    from skupper.cli.link_generate import generate, revoke

    link.add_command(generate)
    link.add_command(revoke)


_add_generated_link_commands()


@link.command("status", cls=ReferenceCommand,
              help="Show the status of links in the current site.",
              arguments={"name": "The name of a link: show only that one."},
              examples=[("Show every link", "skupper link status"),
                        ("Show one link as YAML", "skupper link status west-1 -o yaml")])
@click.argument("name", required=False, metavar="[name]", callback=name_callback("link"))
@output_option
@context_options
def status(name: str | None, output: str | None, target: Target) -> None:
    run(_status(target, name, output))


async def _status(target: Target, name: str | None, output: str | None) -> None:
    from skupper.cli.output import resources, table
    from skupper.cli.session import open_session

    async with open_session(target) as session:
        links = await session.store.list("Link")
        incoming = _incoming_links(session.site, {lk["metadata"]["name"] for lk in links})
        running = session.platform.running()
    if name:
        links = [lk for lk in links if lk["metadata"]["name"] == name]
        incoming = [lk for lk in incoming if lk.get("name") == name]
        if not links and not incoming:
            raise SkupperError(f'No link "{name}"', f'not in namespace "{target.namespace}"',
                               'List links with "skupper link status".')
    if output:
        resources(links, output, single=bool(name) and len(links) == 1)
        return
    if not links and not incoming:
        click.echo(f'There are no links in namespace "{target.namespace}".')
        return
    rows = []
    for lk in links:
        st = lk.get("status") or {}
        rows.append([lk["metadata"]["name"], "outgoing",
                     st.get("status", "Pending") if running else "Stopped",
                     st.get("remoteSiteName") or "-", lk["spec"].get("cost", 1),
                     st.get("message", "") if running else "the site daemon is not running"])
    for lk in incoming:
        remote = lk.get("remoteSiteName") or "-"
        message = f"incoming link from site {remote}"
        if lk.get("certificate"):
            message += f" (certificate {lk['certificate']})"
        if lk.get("message"):  # a dialer gone silent: why this end gave the link up
            message = str(lk["message"])
        state = "Ready" if lk.get("operational", True) else "Error"
        if not running:  # as the daemon last saw it; a stopped site holds no link
            state, message = "Stopped", f"the site daemon is not running ({message})"
        rows.append([lk.get("name") or "-", "incoming", state, remote, "-", message])
    table(["NAME", "DIRECTION", "STATUS", "REMOTE SITE", "COST", "MESSAGE"], rows)


def _incoming_links(site: dict[str, Any] | None, outgoing: set[str]) -> list[dict[str, Any]]:
    """Links other sites made to this one, as the daemon reports them in the site status.

    ``incomingLinks`` names each by its certificate, whatever name its dialer chose; a
    status written before it existed has only the network's links, told apart from
    outgoing ones by name.
    """
    if site is None:
        return []
    status = site.get("status") or {}
    if isinstance(status.get("incomingLinks"), list):
        return [lk for lk in status["incomingLinks"] if isinstance(lk, dict)]
    network = status.get("network") or []
    own_id = site["metadata"].get("uid")
    for entry in network:
        if entry.get("id") == own_id:
            return [lk for lk in entry.get("links") or [] if lk.get("name") not in outgoing]
    return []


@link.command("delete", cls=ReferenceCommand, help="Delete a link. Its credentials go with it.",
              arguments={"name": "The name of the link."},
              examples=[("Delete a link", "skupper link delete west-1")])
@click.argument("name", metavar="<name>", callback=name_callback("link"))
@context_options
def delete(name: str, target: Target) -> None:
    run(_delete(target, name))
    click.echo(f'Link "{name}" is deleted.')


async def _delete(target: Target, name: str) -> None:
    from skupper.cli.session import open_session
    from skupper.store.interface import NotFound

    async with open_session(target) as session:
        try:
            current = await session.store.get("Link", name)
        except NotFound:
            grants = {str(g["metadata"].get("uid")): str(g["metadata"]["name"])
                      for g in await session.store.list("AccessGrant")}
            raise _not_deletable_here(session.site, name, target, grants) from None
        click.echo("Waiting for deletion to complete...")
        await session.store.delete("Link", name)
        credentials = current.get("spec", {}).get("tlsCredentials")
        from skupper.resources.site import is_site_credential

        # A link never owns one of the site's own credentials, whatever its spec says.
        if isinstance(credentials, str) and credentials and not is_site_credential(credentials):
            secrets = session.platform.open_secrets()
            if await secrets.exists(credentials):
                await secrets.delete(credentials)


def _not_deletable_here(site: dict[str, Any] | None, name: str, target: Target,
                        grants: dict[str, str]) -> SkupperError:
    """No outgoing Link of that name: say so, or say where an incoming one is deleted.

    ``grants``: grant uid -> name (an incoming link's certificate names its grant's uid).
    """
    for incoming in _incoming_links(site, set()):
        if incoming.get("name") == name:
            remote = incoming.get("remoteSiteName") or "the remote site"
            grant = grants.get(str(incoming.get("grant") or ""))
            revoke = (f'revoke the grant it came with: "skupper access-grant revoke {grant}"'
                      if grant else 'revoke the grant it came with ("skupper access-grant '
                                    'revoke <grant>")')
            # The remote command is not quoted: it runs at the other site, in its namespace.
            return SkupperError(
                f'Link "{name}" is an incoming link', f"site {remote} dialed it",
                f"Delete it at site {remote} (skupper link delete {name} there), or {revoke}.")
    return SkupperError(f'No link "{name}"', f'not in namespace "{target.namespace}"',
                        'List links with "skupper link status".')
