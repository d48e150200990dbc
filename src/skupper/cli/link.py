"""``skupper link``: status and delete of the links of the current site."""

from __future__ import annotations

import click

from skupper.base.errors import SkupperError
from skupper.cli.options import Target, context_options, output_option, run


@click.group(help="Inspect and delete links to remote sites.")
def link() -> None:
    pass


@link.command("status", help="Show the status of links in the current site.")
@click.argument("name", required=False)
@output_option
@context_options
def status(name: str | None, output: str | None, target: Target) -> None:
    run(_status(target, name, output))


async def _status(target: Target, name: str | None, output: str | None) -> None:
    from skupper.cli.output import resources, table
    from skupper.cli.session import open_session
    from skupper.store.interface import NotFound

    async with open_session(target) as session:
        if name:
            try:
                links = [await session.store.get("Link", name)]
            except NotFound:
                raise SkupperError(f'No link "{name}"', f'not in namespace "{target.namespace}"',
                                   'List links with "skupper link status".') from None
        else:
            links = await session.store.list("Link")
    if output:
        resources(links, output, single=bool(name))
        return
    if not links:
        click.echo(f'There are no links in namespace "{target.namespace}".')
        return
    table(
        ["NAME", "STATUS", "REMOTE SITE", "COST", "MESSAGE"],
        [[lk["metadata"]["name"], (lk.get("status") or {}).get("status", "Pending"),
          (lk.get("status") or {}).get("remoteSiteName", "-"), lk["spec"].get("cost", 1),
          (lk.get("status") or {}).get("message", "")] for lk in links],
    )


@link.command("delete", help="Delete a link and its credentials.")
@click.argument("name")
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
            raise SkupperError(f'No link "{name}"', f'not in namespace "{target.namespace}"',
                               'List links with "skupper link status".') from None
        click.echo("Waiting for deletion to complete...")
        await session.store.delete("Link", name)
        credentials = current.get("spec", {}).get("tlsCredentials")
        if credentials:
            secrets = session.platform.open_secrets()
            if await secrets.exists(credentials):
                await secrets.delete(credentials)
