"""Help that reads like upstream's reference pages (the seed and its refdog siblings).

``ReferenceCommand`` renders a command's ``--help`` in the pages' order: the usage as
they write it (``skupper access-token issue <file> [options]``: arguments first), the
description in full, the arguments with what they mean, the options with the kind of
value each takes (``<integer>``, ``<duration>``), and the pages' examples, verbatim.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click


class ReferenceCommand(click.Command):
    def __init__(self, *args: Any, arguments: dict[str, str] | None = None,
                 examples: Sequence[tuple[str, str]] = (), **kwargs: Any) -> None:
        """``arguments``: name -> description; ``examples``: (comment, command line)."""
        kwargs.setdefault("options_metavar", "[options]")
        super().__init__(*args, **kwargs)
        self.argument_help = dict(arguments or {})
        self.examples = tuple(examples)

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        pieces: list[str] = []
        for param in self.get_params(ctx):
            pieces += param.get_usage_pieces(ctx)
        return [*pieces, self.options_metavar or "[options]"]

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        described = [(param.make_metavar(ctx), self.argument_help.get(param.name or "", ""))
                     for param in self.get_params(ctx) if isinstance(param, click.Argument)]
        if described:
            with formatter.section("Arguments"):
                formatter.write_dl(described)
        super().format_options(ctx, formatter)

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        if self.examples:
            with formatter.section("Examples"):
                for number, (comment, line) in enumerate(self.examples):
                    if number:
                        formatter.write("\n")
                    formatter.write_text(f"# {comment}")
                    formatter.write(f"{' ' * formatter.current_indent}{line}\n")
        super().format_epilog(ctx, formatter)
