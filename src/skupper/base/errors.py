"""User-facing errors: what failed, why, and what to do, with an exit code.

Every failure a user can cause or fix is raised as a SkupperError and rendered as
one line by the CLI in one place (cli.main). Library errors are translated at the
boundary with ``raise SkupperError(...) from exc``.
"""

from __future__ import annotations


class SkupperError(Exception):
    """An error the user sees as one line and a non-zero exit code."""

    exit_code = 1

    def __init__(self, what: str, why: str = "", hint: str = "") -> None:
        self.what = what
        self.why = why
        self.hint = hint
        super().__init__(self.line())

    def line(self) -> str:
        text = self.what
        if self.why:
            text += f": {self.why}"
        if self.hint:
            text = text.rstrip(".") + f". {self.hint}"
        return text


class UsageError(SkupperError):
    """The command line itself is wrong (click's convention: exit code 2)."""

    exit_code = 2

