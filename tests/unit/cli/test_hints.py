"""Hints repeat the namespace the user chose, so they run as printed."""

from __future__ import annotations

from skupper.cli.hints import with_namespace

HINT = 'Error: Link access is not enabled. You can use "skupper site update ' \
       '--enable-link-access" to enable it.'


def test_a_quoted_command_gets_the_namespace() -> None:
    assert with_namespace(HINT, "west") == HINT.replace(
        '--enable-link-access"', '--enable-link-access -n west"')


def test_the_default_namespace_and_no_namespace_change_nothing() -> None:
    assert with_namespace(HINT, "default") == HINT
    assert with_namespace(HINT, None) == HINT


def test_a_command_that_names_its_namespace_is_left_alone() -> None:
    line = 'Start it with "skupper system start -n west". See "skupper link status x".'
    assert with_namespace(line, "west") == (
        'Start it with "skupper system start -n west". '
        'See "skupper link status x -n west".')
    assert with_namespace('Use "skupper x --namespace=a"', "b") == 'Use "skupper x --namespace=a"'


def test_commands_about_the_machine_get_no_namespace() -> None:
    line = 'Build it with "skupper system install --platform docker".'
    assert with_namespace(line, "west") == line
