"""``skupper access-token`` (alias ``token``): issue a token; redeem comes with links."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from skupper.base.errors import SkupperError, UsageError
from skupper.cli.help import ReferenceCommand
from skupper.cli.options import (
    Target,
    context_options,
    duration_value,
    run,
    timeout_option,
)

if TYPE_CHECKING:
    from pathlib import Path

    from skupper.cli.session import Session
    from skupper.resources import Resource

# Upstream's CLI refuses windows under a minute; tests may go lower via this variable.
MIN_EXPIRATION_SECONDS = 60.0
# No grant is meant for more sites than this; the bound keeps every number on the
# command line finite (the link cost's is resources.model.MAX_LINK_COST).
MAX_REDEMPTIONS_ALLOWED = 1_000_000
TEST_MIN_EXPIRATION_ENV = "SKUPPER_TEST_MIN_EXPIRATION"

_INSTRUCTIONS = """
Transfer this file to a remote site. At the remote site,
create a link to this site using the 'skupper token redeem'
command:

   $ skupper access-token redeem {file}

The token expires after {uses} or after {period}."""


@click.group("access-token", help="Issue access tokens (and redeem them at remote sites).")
def access_token() -> None:
    pass


def _min_expiration() -> float:
    import os

    override = os.environ.get(TEST_MIN_EXPIRATION_ENV)
    return float(override) if override else MIN_EXPIRATION_SECONDS


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
@click.option("--expiration-period", "--expiration-window", "expiration", default="15m",
              show_default=True, metavar="<duration>",
              help="The period of time in which a token for this grant can be redeemed "
                   "(at least 1m).")
@click.option("--redemptions-allowed", default="1", show_default=True, metavar="<integer>",
              help="The number of times a token for this grant can be redeemed "
                   "(1 to 1000000).")
@click.option("--cost", default="1", show_default=True, metavar="<integer>",
              help="The link cost written into the token (1 to 1000000).")
@timeout_option()
@context_options
def issue(
    file: str, expiration: str, redemptions_allowed: str, cost: str, timeout: str,
    target: Target,
) -> None:
    from skupper.base.durations import format_duration, humanize_duration
    from skupper.grants.token_file import check_token_destination

    window = duration_value(expiration, "--expiration-period")
    if window < _min_expiration():
        raise UsageError(
            "Invalid value for --expiration-period",
            f"{expiration!r} is shorter than the minimum of "
            f"{humanize_duration(_min_expiration())}",
        )
    from skupper.resources.model import MAX_LINK_COST

    allowed = _bounded_int(redemptions_allowed, "--redemptions-allowed", 1,
                           MAX_REDEMPTIONS_ALLOWED)
    link_cost = _bounded_int(cost, "--cost", 1, MAX_LINK_COST)
    wait = duration_value(timeout, "--timeout")
    destination = check_token_destination(file)
    # With "-" the token is the only thing on standard output; messages go to stderr.
    to_stderr = destination is None
    grant_name = run(_issue(target, destination, format_duration(window), allowed, link_cost,
                            wait, to_stderr))

    def say(text: str) -> None:
        click.echo(text, err=to_stderr)

    say(f'Grant "{grant_name}" is ready.')
    say(f"Token file {file} created." if destination else "Token written to standard output.")
    uses = "1 use" if allowed == 1 else f"{allowed} uses"
    say(_INSTRUCTIONS.format(file=file, uses=uses, period=humanize_duration(window)))


def _bounded_int(text: str, option: str, minimum: int, maximum: int) -> int:
    from skupper.base.text import printable

    try:
        # More digits than the bound has is out of range; int() is not asked to parse them.
        value = int(text) if len(text.strip()) <= len(str(maximum)) + 1 else maximum + 1
    except ValueError:
        raise UsageError(f"Invalid value for {option}",
                         f"{printable(repr(text), 40)} is not a whole number") from None
    if not minimum <= value <= maximum:
        raise UsageError(f"Invalid value for {option}",
                         f"it must be a whole number from {minimum} to {maximum}")
    return value


async def _issue(
    target: Target,
    destination: Path | None,
    window: str,
    allowed: int,
    cost: int,
    wait: float,
    to_stderr: bool,
) -> str:
    import uuid

    from skupper.cli.session import open_session, require_running, require_site
    from skupper.resources import new_resource
    from skupper.resources.site import link_access_enabled

    async with open_session(target) as session:
        current = require_site(session)
        if not link_access_enabled(current):
            raise SkupperError(
                "Link access is not enabled",
                f'site "{current["metadata"]["name"]}" does not accept links',
                'You can use "skupper site update --enable-link-access" to enable it.',
            )
        require_running(session)
        _require_configured(current)
        name = f"{_grant_prefix(str(current['metadata']['name']))}-{uuid.uuid4()}"
        grant = new_resource(
            "AccessGrant", name,
            {"redemptionsAllowed": allowed, "expirationWindow": window},
        )
        await session.store.create(grant)
        try:
            click.echo("Waiting for status...", err=to_stderr)
            ready = await _wait_ready(session, name, wait)
            _deliver(ready, destination, cost)
        except BaseException:
            # No grant is left behind by a failed issue, whatever failed.
            await _delete_quietly(session, name)
            raise
        return name


def _require_configured(site: Resource) -> None:
    """A site that reports itself misconfigured (e.g. a broken CA) issues nothing."""
    from skupper.resources.status import get_condition

    configured = get_condition(site, "Configured")
    if configured and configured.get("status") == "False":
        raise SkupperError(
            f'Site "{site["metadata"]["name"]}" cannot issue tokens',
            str(configured.get("message") or "it is not configured"),
        )


def _grant_prefix(site: str) -> str:
    """The site's name, unless ``<site>-<uuid>`` would be a name a redeemer refuses.

    The token's name is the grant's, and it is never in the name space reserved for a
    site's own credentials: a site called "skupper-x" would otherwise issue tokens that
    no site redeems.
    """
    from skupper.resources.site import is_site_credential

    return f"site-{site}" if is_site_credential(f"{site}-") else site


async def _wait_ready(session: Session, name: str, wait: float) -> Resource:
    from skupper.cli.session import wait_until
    from skupper.resources.status import is_ready

    def usable(grant: Resource) -> bool:
        status = grant.get("status") or {}
        return is_ready(grant) and all(status.get(k) for k in ("url", "code", "ca"))

    return await wait_until(session, "AccessGrant", name, usable, wait, what=f'Grant "{name}"')


def _deliver(grant: Resource, destination: Path | None, cost: int) -> None:
    from skupper.grants.token_file import render_token, token_from_grant, write_token

    token = token_from_grant(grant, cost)
    if destination is None:
        sys.stdout.write(render_token(token))
        sys.stdout.flush()
    else:
        write_token(destination, token)


async def _delete_quietly(session: Session, name: str) -> None:
    import contextlib

    from skupper.store.interface import NotFound

    with contextlib.suppress(NotFound):
        await session.store.delete("AccessGrant", name)


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
    import contextlib

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
