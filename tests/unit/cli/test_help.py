"""The fast root --help must say exactly what click would say."""

from __future__ import annotations

import subprocess

import click
from click.testing import CliRunner

from skupper.cli.entry import ROOT_HELP, SHORT_HELP
from skupper.cli.main import cli
from tests_support import SKUPPER


def test_fast_root_help_is_clicks_rendering() -> None:
    result = CliRunner().invoke(cli, ["--help"], prog_name="skupper", terminal_width=80)
    assert result.exit_code == 0
    assert result.output == ROOT_HELP


def test_short_help_matches_each_group() -> None:
    ctx = click.Context(cli)
    for name, text in SHORT_HELP.items():
        command = cli.get_command(ctx, name)
        assert command is not None
        assert command.get_short_help_str(limit=200) == text


def test_installed_command_answers_help_without_click() -> None:
    done = subprocess.run(
        [SKUPPER, "--help"], capture_output=True, text=True, check=True, timeout=30
    )
    assert done.stdout == ROOT_HELP
    probe = subprocess.run(
        [SKUPPER.replace("/skupper", "/python"), "-c",
         "import sys, runpy; sys.argv=['skupper','--help'];"
         "from skupper.cli.entry import main\n"
         "try:\n    main()\nexcept SystemExit:\n    pass\n"
         "print('click' in sys.modules, file=sys.stderr)"],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert probe.stderr.strip() == "False"
