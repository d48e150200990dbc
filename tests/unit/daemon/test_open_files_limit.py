"""The daemon raises its soft open-files limit to the hard limit at start (issue 14:
5000 connections held through one link need more than a service manager's soft 1024)."""

from __future__ import annotations

import resource
import subprocess
import sys

_PROBE = (
    "import resource\n"
    "from skupper.daemon.main import _raise_open_files_limit\n"
    "_raise_open_files_limit()\n"
    "print(*resource.getrlimit(resource.RLIMIT_NOFILE))\n"
)


def _limits_after_start(soft: int, hard: int) -> tuple[int, int]:
    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    done = subprocess.run([sys.executable, "-c", _PROBE], preexec_fn=lower,
                          capture_output=True, text=True, timeout=30, check=True)
    got_soft, got_hard = done.stdout.split()
    return int(got_soft), int(got_hard)


def test_soft_limit_is_raised_to_the_hard_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    hard = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
    assert _limits_after_start(256, hard) == (hard, hard)


def test_a_soft_limit_already_at_the_hard_limit_is_kept() -> None:
    assert _limits_after_start(300, 300) == (300, 300)
