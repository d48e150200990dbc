"""The click-free `access-token issue` must make exactly the call click makes, or defer."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

import skupper.cli.token as token_command
import skupper.cli.token_issue as token_issue
from skupper.cli import quick
from skupper.cli.main import main as click_main
from skupper.cli.target import Target
from tests_support import SKUPPER

# Command lines the fast path must take, and read exactly as click does.
TAKEN = [
    ["access-token", "issue", "t.yaml"],
    ["token", "issue", "t.yaml"],
    ["access-token", "issue", "-"],
    ["access-token", "issue", "t.yaml", "--cost", "3", "--timeout", "5s"],
    ["access-token", "issue", "--redemptions-allowed=4", "t.yaml", "--expiration-period", "2h"],
    ["access-token", "issue", "t.yaml", "--expiration-window", "1h"],
    ["-n", "west", "access-token", "issue", "t.yaml"],
    ["--namespace=west", "token", "issue", "t.yaml", "-n", "east"],
    ["access-token", "issue", "t.yaml", "--platform", "systemd", "--context", "c1"],
    ["--platform", "docker", "access-token", "issue", "t.yaml", "--kubeconfig", "/k"],
    ["access-token", "issue", "t.yaml", "--namespace", ""],
    ["access-token", "issue", "t.yaml", "--cost", "not-a-number"],
]

# Command lines left to click: help, usage errors, shapes click reads its own way.
DEFERRED = [
    ["access-token", "issue"],
    ["access-token", "issue", "--help"],
    ["access-token", "issue", "-h", "t.yaml"],
    ["access-token", "issue", "a.yaml", "b.yaml"],
    ["access-token", "issue", "t.yaml", "--cost"],
    ["access-token", "issue", "t.yaml", "--cost", "1", "--cost", "2"],
    ["access-token", "issue", "t.yaml", "--expiration-period", "1h", "--expiration-window", "2h"],
    ["access-token", "issue", "t.yaml", "-n", "a", "--namespace", "b"],
    ["access-token", "issue", "t.yaml", "-n=west"],
    ["access-token", "issue", "t.yaml", "-nwest"],
    ["access-token", "issue", "t.yaml", "--cost", "-1"],
    ["access-token", "issue", "--", "t.yaml"],
    ["access-token", "issue", "t.yaml", "--platform", "vms"],
    ["access-token", "issue", "t.yaml", "--bogus", "1"],
    ["--cost", "1", "access-token", "issue", "t.yaml"],
    ["access-token", "redeem", "t.yaml"],
    ["site", "create", "west"],
    ["access-token"],
    [],
]


def _clicks_call(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> tuple[Any, ...]:
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(token_command, "issue_token", lambda *args: calls.append(args))
    with pytest.raises(SystemExit) as exited:
        click_main(argv)
    assert exited.value.code == 0, argv
    (call,) = calls
    return call


def _quick_call(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> tuple[Any, ...]:
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(token_issue, "issue_token", lambda *args: calls.append(args))
    parsed = quick.parse_issue(argv)
    assert parsed is not None, argv
    with pytest.raises(SystemExit) as exited:
        quick.run_issue(parsed)
    assert exited.value.code == 0, argv
    (call,) = calls
    return call


@pytest.fixture(autouse=True)
def _local_platform(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    # Targets resolve without a cluster: only the kubernetes platform reads a kubeconfig.
    monkeypatch.setenv("SKUPPER_PLATFORM", "systemd")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))


@pytest.mark.parametrize("argv", TAKEN, ids=" ".join)
def test_fast_path_makes_clicks_call(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> None:
    by_click = _clicks_call(monkeypatch, argv)
    by_quick = _quick_call(monkeypatch, argv)
    assert by_quick == by_click
    assert isinstance(by_quick[-1], Target)


@pytest.mark.parametrize("argv", DEFERRED, ids=lambda argv: " ".join(argv) or "(none)")
def test_other_command_lines_are_left_to_click(argv: list[str]) -> None:
    assert quick.parse_issue(argv) is None


def test_the_seed_command_runs_without_click_or_asyncio(tmp_path: Any) -> None:
    # No site here: the command fails at once, with the line click's path prints too.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SKUPPER_", "KUBE"))}
    env.update(XDG_DATA_HOME=str(tmp_path), HOME=str(tmp_path), SKUPPER_PLATFORM="systemd")
    probe = subprocess.run(
        [sys.executable, "-c",
         "import sys; sys.argv=['skupper','access-token','issue','t.yaml','-n','west']\n"
         "from skupper.cli.entry import main\n"
         "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
         "print(code, sorted(m for m in ('click', 'asyncio') if m in sys.modules))"],
        capture_output=True, text=True, timeout=30, check=False, env=env, cwd=tmp_path,
    )
    assert probe.stdout.strip() == "1 []", probe.stderr
    by_click = subprocess.run(
        [SKUPPER, "access-token", "issue", "-n", "west", "--", "t.yaml"],  # click reads this
        capture_output=True, text=True, timeout=30, check=False, env=env, cwd=tmp_path,
    )
    assert quick.parse_issue(["access-token", "issue", "-n", "west", "--", "t.yaml"]) is None
    assert by_click.returncode == 1
    assert probe.stderr == by_click.stderr
    assert probe.stderr.startswith('Error: No site resource exists: there is no site in '
                                   'namespace "west".')
