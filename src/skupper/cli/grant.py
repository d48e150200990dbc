"""``skupper access-grant`` (alias ``grant``): status and delete."""

from __future__ import annotations

import click

from skupper.base.errors import SkupperError
from skupper.cli.options import Target, context_options, output_option, run


@click.group("access-grant", help="Inspect and delete the access grants of the current site.")
def access_grant() -> None:
    pass


def _no_grant(name: str, namespace: str) -> SkupperError:
    return SkupperError(
        f'No grant "{name}"',
        f'there is no access grant of that name in namespace "{namespace}"',
        'List grants with "skupper access-grant status".',
    )


@access_grant.command("status", help="Show the status of grants in the current site.")
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
                grants = [await session.store.get("AccessGrant", name)]
            except NotFound:
                raise _no_grant(name, target.namespace) from None
        else:
            grants = await session.store.list("AccessGrant")
    if output:
        resources(grants, output, single=bool(name))
        return
    if not grants:
        click.echo(f'There are no access grants in namespace "{target.namespace}".')
        return
    rows = []
    for grant in grants:
        st = grant.get("status") or {}
        allowed = grant.get("spec", {}).get("redemptionsAllowed", 1)
        rows.append([
            grant["metadata"]["name"],
            f"{st.get('redemptions', 0)}/{allowed}",
            st.get("expirationTime", "-"),
            st.get("status", "Pending"),
            st.get("message", ""),
        ])
    table(["NAME", "REDEMPTIONS", "EXPIRATION", "STATUS", "MESSAGE"], rows)


@access_grant.command("delete", help="Delete a grant; its tokens can no longer be redeemed.")
@click.argument("name")
@context_options
def delete(name: str, target: Target) -> None:
    run(_delete(target, name))
    click.echo(f'Grant "{name}" is deleted.')


async def _delete(target: Target, name: str) -> None:
    from skupper.cli.session import open_session
    from skupper.store.interface import NotFound

    async with open_session(target) as session:
        click.echo("Waiting for deletion to complete...")
        try:
            await session.store.delete("AccessGrant", name)
        except NotFound:
            raise _no_grant(name, target.namespace) from None
