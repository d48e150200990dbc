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
    from skupper.resources.generated_links import generated_links

    async with open_session(target) as session:
        links = await session.store.list("Link")
        incoming = _incoming_links(session.site, {lk["metadata"]["name"] for lk in links})
        generated = generated_links(session.site)
        running = session.platform.running()
    if name:
        links = [lk for lk in links if lk["metadata"]["name"] == name]
        incoming = [lk for lk in incoming if lk.get("name") == name]
        generated = [entry for entry in generated if entry["name"] == name]
        if not links and not incoming and not generated:
            raise SkupperError(f'No link "{name}"', f'not in namespace "{target.namespace}"',
                               'List links with "skupper link status".')
    if output:
        resources(links, output, single=bool(name) and len(links) == 1)
        return
    by_certificate = {str(entry["serial"]): entry for entry in generated}
    unused = [entry for entry in generated if entry["serial"] not in
              {lk.get("certificate") for lk in incoming}]
    if not links and not incoming and not unused:
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
        made_here = by_certificate.get(str(lk.get("certificate")))
        if made_here is not None:
            message += (f" (generated link {made_here['name']}, certificate "
                        f"{lk['certificate']})")
        elif lk.get("certificate"):
            message += f" (certificate {lk['certificate']})"
        if lk.get("message"):  # a dialer gone silent: why this end gave the link up
            message = str(lk["message"])
        state = "Ready" if lk.get("operational", True) else "Error"
        if not running:  # as the daemon last saw it; a stopped site holds no link
            state, message = "Stopped", f"the site daemon is not running ({message})"
        rows.append([lk.get("name") or "-", "incoming", state, remote, "-", message])
    rows += [_generated_row(entry, running) for entry in unused]
    table(["NAME", "DIRECTION", "STATUS", "REMOTE SITE", "COST", "MESSAGE"], rows)


def _generated_row(entry: dict[str, Any], running: bool) -> list[Any]:
    """A link generated here that no site is linked with now: revoked, expired or waiting."""
    from skupper.resources.model import now_rfc3339

    remote = entry.get("remoteSiteName") or "-"
    if entry.get("revoked"):
        state = "Revoked"
        message = f"generated link, revoked at {entry['revoked']}; its certificate is refused"
    elif str(entry.get("expires") or "9") <= now_rfc3339():  # RFC 3339 UTC sorts as time
        state, message = "Expired", f"generated link, its certificate expired at " \
                                    f"{entry['expires']}"
    else:
        state = "Pending" if running else "Stopped"
        message = (f"generated link for site {remote}, not connected now" if entry.get(
            "remoteSiteId") else "generated link, not applied at any site yet")
        message += f" (certificate {entry['serial']}, expires {entry.get('expires', '-')})"
    return [entry["name"], "incoming", state, remote, "-", message]


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
    from skupper.resources.generated_links import generated_links

    if any(entry["name"] == name for entry in generated_links(site)):
        return SkupperError(
            f'Link "{name}" is a link generated here',
            "its Link and Secret are at the site that applied them",
            f'Delete them there, or cut that site off from here: "skupper link revoke {name}".')
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
