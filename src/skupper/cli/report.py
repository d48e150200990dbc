"""How an error reaches the user: one line on standard error, the same from every path."""

from __future__ import annotations

from skupper.base.errors import SkupperError
from skupper.cli.hints import with_namespace
from skupper.cli.target import namespace_for_hints

INTERRUPTED = "Interrupted."


def error_line(exc: SkupperError) -> str:
    """``Error: <what failed>: <why>. <what to do>``, hints repeating the ``-n`` given."""
    # One line, whatever the user typed: control characters are shown escaped.
    return "Error: " + "".join(c if c.isprintable() else repr(c)[1:-1]
                               for c in with_namespace(exc.line(), namespace_for_hints()))
