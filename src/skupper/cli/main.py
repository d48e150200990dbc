"""The root command group, lazily loaded subcommands, and the one place errors print."""

from __future__ import annotations

import importlib
import sys

import click

from skupper.base.errors import SkupperError
from skupper.cli.entry import SHORT_HELP
from skupper.cli.options import root_context_options
from skupper.cli.report import INTERRUPTED

# name -> (module, attribute); aliases point at the same group.
_COMMANDS: dict[str, tuple[str, str]] = {
    "site": ("skupper.cli.site", "site"),
    "access-token": ("skupper.cli.token", "access_token"),
    "token": ("skupper.cli.token", "access_token"),
    "access-grant": ("skupper.cli.grant", "access_grant"),
    "grant": ("skupper.cli.grant", "access_grant"),
    "link": ("skupper.cli.link", "link"),
    "listener": ("skupper.cli.listener", "listener"),
    "connector": ("skupper.cli.connector", "connector"),
    "system": ("skupper.cli.system", "system"),
    "network": ("skupper.cli.network", "network"),
    "connection": ("skupper.cli.connection", "connection"),
    "debug": ("skupper.cli.debug", "debug"),
    "version": ("skupper.cli.version", "version"),
}
_ALIASES = {"token": "access-token", "grant": "access-grant"}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in _COMMANDS if name not in _ALIASES]

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, SHORT_HELP[name]) for name in self.list_commands(ctx)])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _COMMANDS.get(cmd_name)
        if target is None:
            return None
        module = importlib.import_module(target[0])
        command: click.Command = getattr(module, target[1])
        return command


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    help=(
        "Skupper site linking: create sites, issue and redeem access tokens, link sites.\n\n"
        "Aliases: 'token' for 'access-token', 'grant' for 'access-grant'."
    ),
)
@root_context_options
def cli() -> None:
    pass


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="skupper", standalone_mode=False)
    except SkupperError as exc:
        from skupper.cli.report import error_line

        click.echo(error_line(exc), err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.UsageError as exc:
        # One line like every other error, with where to look instead of click's three.
        path = exc.ctx.command_path if exc.ctx is not None else "skupper"
        message = " ".join(exc.format_message().split()).rstrip(".")
        click.echo(f'Error: {message}. See "{path} --help".', err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo(INTERRUPTED, err=True)
        sys.exit(130)
    sys.exit(0)
