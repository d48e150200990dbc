"""``skupper access-grant`` (alias ``grant``): status and delete."""

from __future__ import annotations

from typing import Any

import click

from skupper.base.errors import SkupperError
from skupper.cli.help import ReferenceCommand
from skupper.cli.names import name_callback
from skupper.cli.options import (
    Target,
    context_options,
    duration_value,
    output_option,
    run,
    timeout_option,
)


@click.group("access-grant", help="Inspect and delete the access grants of the current site.")
def access_grant() -> None:
    pass


def _no_grant(name: str, namespace: str) -> SkupperError:
    return SkupperError(
        f'No grant "{name}"',
        f'there is no access grant of that name in namespace "{namespace}"',
        'List grants with "skupper access-grant status".',
    )


@access_grant.command("status", cls=ReferenceCommand,
                      help="Show the status of grants in the current site.",
                      arguments={"name": "The name of a grant: show it in full, with its "
                                         "redemption ledger."})
@click.argument("name", required=False, metavar="[name]", callback=name_callback("grant"))
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
    if name:
        _detail(grants[0])
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


@access_grant.command("delete", cls=ReferenceCommand,
                      help="Delete a grant. Its tokens can no longer be redeemed.",
                      arguments={"name": "The name of the grant."})
@click.argument("name", metavar="<name>", callback=name_callback("grant"))
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


def _detail(grant: dict[str, Any]) -> None:
    """One grant in full, with its redemption ledger (the code is never shown)."""
    from skupper.base.text import printable
    from skupper.cli.output import table
    from skupper.grants.redemption import REVOKED_ANNOTATION

    st = grant.get("status") or {}
    annotations = grant["metadata"].get("annotations") or {}
    fields = [
        ("Name", grant["metadata"]["name"]),
        ("Status", st.get("status", "Pending")),
        ("Message", st.get("message", "")),
        ("Redemptions", f"{st.get('redemptions', 0)}/"
                        f"{grant.get('spec', {}).get('redemptionsAllowed', 1)}"),
        ("Expiration", st.get("expirationTime", "-")),
        ("Wrong codes", str(st.get("wrongCodes", 0))),
        ("Slowed down", f"{st.get('rateLimited', 0)} attempts answered 429"),
        ("Revoked", annotations.get(REVOKED_ANNOTATION, "no")),
        ("URL", st.get("url", "-")),
    ]
    for label, value in fields:
        click.echo(f"{label + ':':<14}{value}")
    ledger = st.get("ledger") or []
    dropped = int(st.get("ledgerDropped") or 0)
    click.echo("")
    if not ledger:
        click.echo("Ledger: no redemption has been attempted.")
        return
    click.echo("Ledger (redemption attempts, wrong codes dropped first)"
               + (f", {dropped} older entries not kept:" if dropped else ":"))
    # Entries hold what clients sent (checked names, addresses): escaped all the same.
    table(["TIME", "REMOTE", "NAME", "SUBJECT", "OUTCOME", "SERIAL"],
          [[printable(e.get(key, default), 80) for key, default in (
              ("time", ""), ("remote", ""), ("name", ""), ("subject", ""), ("outcome", ""),
              ("serial", "-"))] for e in ledger])


@access_grant.command(
    "revoke", cls=ReferenceCommand,
    help="Revoke a grant and every certificate issued from it: their links close.",
    arguments={"name": "The name of the grant."})
@click.argument("name", metavar="<name>", callback=name_callback("grant"))
@timeout_option()
@context_options
def revoke(name: str, timeout: str, target: Target) -> None:
    wait = duration_value(timeout, "--timeout")
    count = run(_revoke(target, name, wait))
    noun = "certificate" if count == 1 else "certificates"
    click.echo(f'Grant "{name}" is revoked; {count} {noun} revoked.')


async def _revoke(target: Target, name: str, wait: float) -> int:
    from skupper.cli.session import open_session, require_running, require_site, wait_until
    from skupper.grants.redemption import REVOKED_ANNOTATION
    from skupper.resources.model import now_rfc3339
    from skupper.resources.status import get_condition
    from skupper.store.interface import Conflict, NotFound

    async with open_session(target) as session:
        current_site = require_site(session)
        require_running(session)
        for _ in range(10):
            try:
                grant = await session.store.get("AccessGrant", name)
            except NotFound:
                raise _no_grant(name, target.namespace) from None
            annotations = grant["metadata"].setdefault("annotations", {})
            if REVOKED_ANNOTATION in annotations:
                break
            annotations[REVOKED_ANNOTATION] = now_rfc3339()
            try:
                await session.store.update(grant)
                break
            except Conflict:
                continue  # a redemption wrote first: read again
        click.echo("Waiting for revocation to complete...")

        def revoked(resource: dict[str, Any]) -> bool:
            cond = get_condition(resource, "Usable")
            return bool(cond and cond.get("reason") == "Revoked")

        grant = await wait_until(session, "AccessGrant", name, revoked, wait,
                                 what=f'Revoking grant "{name}"', fail_on_error=False)
        uid = grant["metadata"].get("uid")
        site_name = str(current_site["metadata"]["name"])

        def listed(site: dict[str, Any]) -> bool:
            entries = (site.get("status") or {}).get("revokedGrants") or []
            return uid in {e.get("uid") for e in entries}

        await wait_until(session, "Site", site_name, listed, wait,
                         what=f'Revoking the certificates of grant "{name}"')
        return int((grant.get("status") or {}).get("redemptions") or 0)
