"""``skupper version``."""

from __future__ import annotations

import click

from skupper import __version__
from skupper.cli.options import Target, context_options


@click.command(help="Show the version of this skupper.")
@context_options
def version(target: Target) -> None:
    click.echo(f"skupper {__version__} (resources skupper.io/v2alpha1)")
