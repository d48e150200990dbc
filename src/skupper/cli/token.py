"""``skupper access-token`` (alias ``token``): issue a token; redeem comes with links."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import click

from skupper.base.errors import SkupperError
from skupper.cli.help import ReferenceCommand
from skupper.cli.options import (
    Target,
    context_options,
    duration_value,
    run,
    timeout_option,
)
from skupper.cli.token_issue import (
    DEFAULT_COST,
    DEFAULT_EXPIRATION,
    DEFAULT_REDEMPTIONS,
    DEFAULT_TIMEOUT,
    issue_token,
)

if TYPE_CHECKING:
    from skupper.cli.session import Session
    from skupper.resources import Resource


@click.group("access-token", help="Issue access tokens (and redeem them at remote sites).")
def access_token() -> None:
    pass


@access_token.command(
    "issue", cls=ReferenceCommand,
    help="Issue a token redeemable for a link to the current site.\n\n"
         "Issue a token that can be redeemed at a remote site for a link to the current "
         "site.\n\nThis command first creates a grant in order to issue the token.",
    short_help="Issue a token redeemable for a link to the current site.",
    arguments={"file": "The name of the token file. Use - to write the token to standard "
                       "output."},
    examples=[("Issue a token", "skupper access-token issue ~/token.yaml"),
              ("Issue a token with non-default limits",
               "skupper access-token issue ~/token.yaml --expiration-period 24h "
               "--redemptions-allowed 3")])
@click.argument("file", metavar="<file>")
@click.option("--expiration-period", "--expiration-window", "expiration",
              default=DEFAULT_EXPIRATION, show_default=True, metavar="<duration>",
              help="The period of time in which a token for this grant can be redeemed "
                   "(at least 1m).")
@click.option("--redemptions-allowed", default=DEFAULT_REDEMPTIONS, show_default=True,
              metavar="<integer>",
              help="The number of times a token for this grant can be redeemed "
                   "(1 to 1000000).")
@click.option("--cost", default=DEFAULT_COST, show_default=True, metavar="<integer>",
              help="The link cost written into the token (1 to 1000000).")
@timeout_option(DEFAULT_TIMEOUT)
@context_options
def issue(
    file: str, expiration: str, redemptions_allowed: str, cost: str, timeout: str,
    target: Target,
) -> None:
    issue_token(file, expiration, redemptions_allowed, cost, timeout, target)


@access_token.command(
    "redeem", cls=ReferenceCommand,
    help="Redeem a token in order to obtain a link to a remote site.",
    arguments={"file": "The name of the token file. Use - to read the token from standard "
                       "input."},
    examples=[("Redeem a token", "skupper access-token redeem ~/token.yaml"),
              ("Redeem a token issued at another site, over ssh",
               "ssh west skupper access-token issue - | skupper access-token redeem -")])
@click.argument("file", metavar="<file>")
@timeout_option()
@context_options
def redeem(file: str, timeout: str, target: Target) -> None:
    from skupper.grants.token_file import parse_token

    wait = duration_value(timeout, "--timeout")
    token = parse_token(file)
    run(_redeem(target, token, wait))
    if file != "-":  # a token from standard input left no file behind
        click.echo(f"You can now safely delete {file}.")


async def _redeem(target: Target, token: Resource, wait: float) -> None:
    import asyncio

    from skupper.cli.session import open_session, require_running, require_site
    from skupper.controller.token import check_unused, store_answer
    from skupper.grants.client import parse_answer, post_redemption
    from skupper.grants.token_file import link_cost

    spec = token["spec"]
    name = str(token["metadata"]["name"])
    async with open_session(target) as session:
        current = require_site(session)
        require_running(session)
        # Before anything is spent: nothing of this redemption may exist here already.
        await check_unused(session.store, session.platform.open_secrets(), name)
        if session.platform.name == "kubernetes":  # the controller redeems an AccessToken
            links = await _redeem_in_cluster(session, token, wait)
        else:
            cost = link_cost(spec, f"token {name}")
            body = await asyncio.to_thread(
                post_redemption, spec["url"], spec["ca"], spec["code"], name,
                str(current["metadata"]["name"]),
            )
            answer = parse_answer(spec["url"], body, name)
            links = await store_answer(session.store, session.platform.open_secrets(), answer,
                                       cost)
        click.echo("Waiting for status...")
        await _wait_active(session, links, wait)


async def _wait_active(session: Session, links: list[str], wait: float) -> None:
    """Wait for each Link; one that is not active says so, and that it was kept.

    The redemption is spent at the issuing site by now, so the Link stays and keeps
    dialing (it may come up later); the command still fails, with the Link's reason.
    """
    from skupper.base.text import printable
    from skupper.cli.session import wait_until
    from skupper.resources.status import is_ready, status_message
    from skupper.store.interface import NotFound

    for link_name in links:
        try:
            await wait_until(session, "Link", link_name, is_ready, wait,
                             what=f'Link "{link_name}"')
        except SkupperError as exc:
            try:
                reason = status_message(await session.store.get("Link", link_name))
            except NotFound:
                raise exc from None
            raise SkupperError(
                f'Link "{link_name}" was created but is not active yet',
                printable(reason, 300),
                f'It was kept and keeps retrying (the token was spent); see "skupper link '
                f'status {link_name}", or remove it with "skupper link delete {link_name}".',
            ) from None
        click.echo(f'Link "{link_name}" is active.')


async def _redeem_in_cluster(session: Session, token: Resource, wait: float) -> list[str]:
    """Create the AccessToken; the controller redeems it; wait for it and for its Links.

    Outputs and errors are the local platform's: a refusal is the redeemer's own line,
    and a refused token leaves nothing behind (its AccessToken is deleted).
    """

    from skupper.cli.session import wait_until
    from skupper.controller.token import links_of
    from skupper.resources import new_resource
    from skupper.resources.status import ERROR
    from skupper.store.interface import AlreadyExists, NotFound

    name = str(token["metadata"]["name"])
    resource = new_resource("AccessToken", name, {
        key: token["spec"][key] for key in ("url", "code", "ca", "linkCost", "settings")
        if key in token["spec"]})
    try:
        await session.store.create(resource)
    except AlreadyExists:
        # Its links are gone (checked above): an earlier try, failed or since undone.
        # Like the local platform, present the token again (the grant server decides).
        existing = await session.store.get("AccessToken", name)
        status = existing.get("status") or {}
        if status.get("redeemed") or status.get("status") == ERROR:
            await session.store.delete("AccessToken", name)
            await session.store.create(resource)

    def settled(current: Resource) -> bool:
        status = current.get("status") or {}
        return bool(status.get("redeemed")) or status.get("status") == ERROR

    done = await wait_until(session, "AccessToken", name, settled, wait,
                            what=f'Access token "{name}"')
    status = done.get("status") or {}
    if not status.get("redeemed"):
        with contextlib.suppress(NotFound):
            await session.store.delete("AccessToken", name)
        raise SkupperError(str(status.get("message") or "the redemption failed"))
    return [str(link["metadata"]["name"])
            for link in links_of(await session.store.list("Link"), name)]
