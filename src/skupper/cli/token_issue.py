"""``skupper access-token issue``: what it does, with no click and (mostly) no asyncio.

The click command (``cli.token``) and the command-line fast path (``cli.quick``) both
call ``issue_token``; this module imports neither click nor asyncio, so the seed's
command starts in a fraction of the time. The kubernetes platform still goes through
the asynchronous session (its API client is asynchronous).
"""

from __future__ import annotations

import contextlib
import sys
from typing import TYPE_CHECKING, NamedTuple

from skupper.base.errors import SkupperError, UsageError
from skupper.cli.values import bounded_int, duration_value

if TYPE_CHECKING:
    from pathlib import Path

    from skupper.cli.session_checks import SiteSession
    from skupper.cli.target import Target
    from skupper.platforms.kubernetes import KubernetesPlatform
    from skupper.platforms.local_platform import LocalPlatform
    from skupper.resources import Resource

DEFAULT_EXPIRATION = "15m"
DEFAULT_REDEMPTIONS = "1"
DEFAULT_COST = "1"
DEFAULT_TIMEOUT = "60s"
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


def echo(text: str, *, err: bool = False) -> None:
    """One line to standard output or error, flushed (what click.echo does for us)."""
    stream = sys.stderr if err else sys.stdout
    stream.write(text + "\n")
    stream.flush()


def _min_expiration() -> float:
    import os

    override = os.environ.get(TEST_MIN_EXPIRATION_ENV)
    return float(override) if override else MIN_EXPIRATION_SECONDS


def issue_token(
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

    allowed = bounded_int(redemptions_allowed, "--redemptions-allowed", 1,
                          MAX_REDEMPTIONS_ALLOWED)
    link_cost = bounded_int(cost, "--cost", 1, MAX_LINK_COST)
    wait = duration_value(timeout, "--timeout")
    destination = check_token_destination(file)
    # With "-" the token is the only thing on standard output; messages go to stderr.
    to_stderr = destination is None
    request = _Request(destination, format_duration(window), allowed, link_cost, wait, to_stderr)
    platform = target.platform()
    if platform.has_blocking_store:  # no asyncio: a third of this command's run
        grant_name = _issue_blocking(platform, request)  # type: ignore[arg-type]
    else:
        import asyncio

        grant_name = asyncio.run(_issue(target, platform, request))

    def say(text: str) -> None:
        echo(text, err=to_stderr)

    say(f'Grant "{grant_name}" is ready.')
    say(f"Token file {file} created." if destination else "Token written to standard output.")
    uses = "1 use" if allowed == 1 else f"{allowed} uses"
    say(_INSTRUCTIONS.format(file=file, uses=uses, period=humanize_duration(window)))


class _Request(NamedTuple):
    destination: Path | None
    window: str
    allowed: int
    cost: int
    wait: float
    to_stderr: bool


def _issue_blocking(platform: LocalPlatform, request: _Request) -> str:
    from skupper.cli.blocking_session import open_blocking_session, wait_until_blocking
    from skupper.store.interface import NotFound

    with open_blocking_session(platform) as session:
        grant = _new_grant(_issuing_site(session), request)
        name = str(grant["metadata"]["name"])
        session.store.create(grant)
        try:
            echo("Waiting for status...", err=request.to_stderr)
            ready = wait_until_blocking(session, "AccessGrant", name, _usable, request.wait,
                                        what=f'Grant "{name}"')
            _deliver(ready, request.destination, request.cost)
        except BaseException:
            # No grant is left behind by a failed issue, whatever failed.
            with contextlib.suppress(NotFound):
                session.store.delete("AccessGrant", name)
            raise
        return name


async def _issue(target: Target, platform: KubernetesPlatform | LocalPlatform,
                 request: _Request) -> str:
    from skupper.cli.session import open_session, wait_until
    from skupper.store.interface import NotFound

    async with open_session(target, platform=platform) as session:
        grant = _new_grant(_issuing_site(session), request)
        name = str(grant["metadata"]["name"])
        await session.store.create(grant)
        try:
            echo("Waiting for status...", err=request.to_stderr)
            ready = await wait_until(session, "AccessGrant", name, _usable, request.wait,
                                     what=f'Grant "{name}"')
            _deliver(ready, request.destination, request.cost)
        except BaseException:
            # No grant is left behind by a failed issue, whatever failed.
            with contextlib.suppress(NotFound):
                await session.store.delete("AccessGrant", name)
            raise
        return name


def _issuing_site(session: SiteSession) -> Resource:
    """The session's site, if it can issue a token now: a one-line error if not."""
    from skupper.cli.session_checks import require_running, require_site
    from skupper.resources.site import link_access_enabled

    current = require_site(session)
    if not link_access_enabled(current):
        raise SkupperError(
            "Link access is not enabled",
            f'site "{current["metadata"]["name"]}" does not accept links',
            'You can use "skupper site update --enable-link-access" to enable it.',
        )
    require_running(session)
    _require_configured(current)
    return current


def _new_grant(site: Resource, request: _Request) -> Resource:
    from skupper.base.ids import random_uuid
    from skupper.resources import new_resource

    name = f"{_grant_prefix(str(site['metadata']['name']))}-{random_uuid()}"
    return new_resource("AccessGrant", name,
                        {"redemptionsAllowed": request.allowed,
                         "expirationWindow": request.window})


def _usable(grant: Resource) -> bool:
    from skupper.resources.status import is_ready

    status = grant.get("status") or {}
    return is_ready(grant) and all(status.get(k) for k in ("url", "code", "ca"))


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


def _deliver(grant: Resource, destination: Path | None, cost: int) -> None:
    from skupper.grants.token_file import render_token, token_from_grant, write_token

    token = token_from_grant(grant, cost)
    if destination is None:
        sys.stdout.write(render_token(token))
        sys.stdout.flush()
    else:
        write_token(destination, token)
