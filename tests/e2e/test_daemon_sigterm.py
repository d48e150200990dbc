"""SIGTERM while links are open: a clean stop, "site daemon stopped", no traceback.

Issue 9, point 9. Both ends of a live link are stopped by SIGTERM to their pid (what
`system stop` and systemd send); each log ends with the stop line and holds no error.
"""

from __future__ import annotations

import os
import signal

import pytest

from tests_support import Skupper, alive, table, wait_for


def _link(skupper: Skupper) -> None:
    skupper.run("site", "create", "west", "--enable-link-access", "-n", "west")
    skupper.run("site", "create", "east", "-n", "east")
    token = str(skupper.home / "token.yaml")
    skupper.run("access-token", "issue", token, "-n", "west")
    skupper.run("access-token", "redeem", token, "-n", "east")
    wait_for("the incoming link at west",
             lambda: [r for r in table(skupper.run("link", "status", "-n", "west").stdout)
                      if r["STATUS"] == "Ready"], 30)


def _terminate(skupper: Skupper, namespace: str) -> list[str]:
    pid = skupper.daemon_pid(namespace)
    assert pid is not None
    os.kill(pid, signal.SIGTERM)
    wait_for(f"the daemon of {namespace} to stop", lambda: not alive(pid), 15)
    log = skupper.namespace_dir(namespace) / "logs" / "daemon.log"
    return log.read_text().splitlines()


@pytest.mark.parametrize("first", ["west", "east"])
def test_sigterm_with_links_open_stops_cleanly(skupper: Skupper, first: str) -> None:
    _link(skupper)
    second = "east" if first == "west" else "west"
    for namespace in (first, second):
        lines = _terminate(skupper, namespace)
        assert lines[-1].endswith("INFO skupper.daemon: site daemon stopped"), lines[-3:]
        troubles = [line for line in lines if " ERROR " in line or " CRITICAL " in line
                    or "Traceback" in line or not line[:1].isdigit()]
        assert troubles == [], troubles
        stderr = skupper.namespace_dir(namespace) / "logs" / "daemon-stderr.log"
        assert stderr.read_text() == ""
