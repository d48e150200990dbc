"""``skupper access-token issue`` answered without importing click.

Importing click is a third of the seed command's run. For the plain shapes of that
command (options before or after the command, ``--option value`` or
``--option=value``, one file argument), this reads the command line itself and calls
the same ``issue_token`` the click command calls. Anything else (help, an unknown or
repeated option, a missing argument, ``--``, an option value that looks like an
option, an unknown platform) is left to click, so every usage error and every help
page still comes from one place. A test parses a range of command lines both ways
and requires the same call.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from skupper.cli.target import ContextFlags

# The root's (and each command's) context options: position in the ContextFlags tuple.
_CONTEXT = {"-n": 0, "--namespace": 0, "--context": 1, "--platform": 2, "--kubeconfig": 3}
_ISSUE = {
    "--expiration-period": "expiration",
    "--expiration-window": "expiration",
    "--redemptions-allowed": "redemptions_allowed",
    "--cost": "cost",
    "--timeout": "timeout",
}
_GROUP = ("access-token", "token")


class IssueCall(NamedTuple):
    """What ``skupper access-token issue`` was asked, as the click command receives it."""

    file: str
    options: dict[str, str]
    context: list[str | None]
    root: list[str | None]


def parse_issue(argv: list[str]) -> IssueCall | None:
    """The call ``argv`` makes, or None to let click read it."""
    root: list[str | None] = [None] * 4
    rest = _take_options(argv, root, {})
    if rest is None or len(rest) < 2 or rest[0] not in _GROUP or rest[1] != "issue":
        return None
    context: list[str | None] = [None] * 4
    options: dict[str, str] = {}
    positional = _take_options(rest[2:], context, options, positional_allowed=True)
    if positional is None or len(positional) != 1:
        return None
    return IssueCall(positional[0], options, context, root)


def _take_options(
    args: list[str], context: list[str | None], options: dict[str, str], *,
    positional_allowed: bool = False,
) -> list[str] | None:
    """Fill ``context`` and ``options``; return what is left, or None for click."""
    seen: set[str] = set()
    left: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "-" or not arg.startswith("-"):
            if not positional_allowed:
                return [*left, *args[index:]]  # the command and what follows it
            left.append(arg)
            index += 1
            continue
        name, has_value, value = arg.partition("=")
        if not has_value:
            if index + 1 >= len(args):
                return None
            value = args[index + 1]
            index += 1
        index += 1
        slot = _ISSUE.get(name) if positional_allowed else None
        if name not in _CONTEXT and slot is None:
            return None
        # click reads "-n=x" as the namespace "=x": such shapes are click's to read.
        if (has_value and not name.startswith("--")) or value.startswith("-") or name in seen:
            return None
        seen.add(name)
        if slot is not None:
            if slot in options:  # --expiration-period and --expiration-window both given
                return None
            options[slot] = value
        else:
            if name == "--platform":
                from skupper.platforms.select import PLATFORMS

                if value not in PLATFORMS:
                    return None
            if context[_CONTEXT[name]] is not None:  # -n and --namespace both given
                return None
            context[_CONTEXT[name]] = value
    return left


def _flags(values: list[str | None]) -> ContextFlags:
    return values[0], values[1], values[2], values[3]


def run_issue(call: IssueCall) -> None:
    """Run the call like ``cli.main`` runs a command: its errors, its exit codes."""
    from skupper.base.errors import SkupperError
    from skupper.cli.report import INTERRUPTED, error_line
    from skupper.cli.target import resolve_target
    from skupper.cli.token_issue import (
        DEFAULT_COST,
        DEFAULT_EXPIRATION,
        DEFAULT_REDEMPTIONS,
        DEFAULT_TIMEOUT,
        issue_token,
    )

    options = call.options
    try:
        target = resolve_target(_flags(call.context), _flags(call.root))
        issue_token(
            call.file,
            options.get("expiration", DEFAULT_EXPIRATION),
            options.get("redemptions_allowed", DEFAULT_REDEMPTIONS),
            options.get("cost", DEFAULT_COST),
            options.get("timeout", DEFAULT_TIMEOUT),
            target,
        )
    except SkupperError as exc:
        sys.stderr.write(error_line(exc) + "\n")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write(INTERRUPTED + "\n")
        sys.exit(130)
    sys.exit(0)
