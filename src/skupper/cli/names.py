"""Names on the command line: one check and one exit code (2, a bad command line) for all.

A site, listener, connector, link or grant name is a Kubernetes object name (DNS-1123):
a name that cannot exist is refused before anything is asked of the store or the
daemon, whatever the command.
"""

from __future__ import annotations

from collections.abc import Callable

import click

from skupper.base.errors import UsageError

# Sites, listeners and connectors also name things that must fit a DNS label.
LABEL_LENGTH = 63
NAME_LENGTH = 253


def check_name(what: str, name: str, limit: int = NAME_LENGTH) -> str:
    from skupper.base.text import printable
    from skupper.resources.model import valid_name

    if not valid_name(name) or len(name) > limit:
        raise UsageError(f'Invalid {what} name "{printable(name, 80)}"',
                         "use lower-case letters, digits, '-' and '.', starting and ending "
                         f"with a letter or digit, at most {limit} characters")
    return name


NameCallback = Callable[[click.Context, click.Parameter, "str | None"], "str | None"]


def name_callback(what: str, limit: int = NAME_LENGTH) -> NameCallback:
    """A click argument callback checking a (possibly absent) name argument."""

    def check(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
        return None if value is None else check_name(what, value, limit)

    return check
