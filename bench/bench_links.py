"""Benchmark: how fast a token becomes a live link, and how fast a link comes back.

    .venv/bin/python bench/bench_links.py [--rounds N]

1. ``access-token redeem`` from its start to the line ``Link "..." is active.``
   (target: under 1 s on loopback), beside a bare ``python -c pass`` and
   ``access-token issue`` measured in the same run.
2. After west is killed with SIGKILL: how long until east's Link says it is not
   operational (detection), and, once west is started again, how long from west's link
   port accepting connections until east's Link is Ready again (recovery; target: 5 s).

Loopback only; every daemon started is stopped by its pid at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import common
from common import PYTHON, SKUPPER, Hermetic, Row, median, ms, p90, time_once

REDEEM_TARGET_SECONDS = 1.0
RECOVERY_TARGET_SECONDS = 5.0
POLL_SECONDS = 0.01
# Every wait below gives up after this long, so the bench always ends.
WAIT_LIMIT_SECONDS = 30.0


def _link_ready(h: Hermetic, namespace: str, name: str) -> bool | None:
    """Read the Link's Ready condition straight from the namespace's SQLite store."""
    import sqlite3

    db = h.home / "skupper" / "namespaces" / namespace / "store.db"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        row = conn.execute(
            "SELECT body FROM resources WHERE kind='Link' AND name=?", (name,)
        ).fetchone()
    if row is None:
        return None
    for cond in json.loads(row[0]).get("status", {}).get("conditions", []):
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def _wait(predicate: object, what: str) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < WAIT_LIMIT_SECONDS:
        if predicate():  # type: ignore[operator]
            return time.perf_counter() - start
        time.sleep(POLL_SECONDS)
    raise RuntimeError(f"timed out waiting for {what}")


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _redeem_to_active(h: Hermetic, token: Path) -> tuple[float, str]:
    """Seconds from starting redeem to its 'is active' line, and the link name."""
    start = time.perf_counter()
    child = subprocess.Popen(
        [SKUPPER, "access-token", "redeem", str(token), "-n", "east"],
        env=h.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        stdin=subprocess.DEVNULL,
    )
    assert child.stdout is not None
    try:
        for line in child.stdout:
            if line.startswith("Link ") and line.rstrip().endswith("is active."):
                return time.perf_counter() - start, line.split('"')[1]
        raise RuntimeError(f"redeem failed: {child.stderr.read() if child.stderr else ''}")
    finally:
        child.wait(timeout=WAIT_LIMIT_SECONDS)


def run(rounds: int) -> list[Row]:
    rows: list[Row] = []
    with common.hermetic("skupper-bench-links-") as h:
        h.skupper("site", "create", "west", "--enable-link-access", "-n", "west")
        h.skupper("site", "create", "east", "-n", "east")
        bare = [time_once([PYTHON, "-c", "pass"], h.env) for _ in range(rounds)]
        issue_times: list[float] = []
        redeem_times: list[float] = []
        link = ""
        for i in range(rounds):
            token = h.home / f"token-{i}.yaml"
            issue_times.append(time_once(
                [SKUPPER, "access-token", "issue", str(token), "-n", "west"], h.env))
            elapsed, link = _redeem_to_active(h, token)
            redeem_times.append(elapsed)
        rows.append(Row(
            f"redeem to 'Link ... is active' (n={rounds})",
            f"median {ms(median(redeem_times))}, p90 {ms(p90(redeem_times))}",
            f"python -c pass {ms(median(bare))}; issue {ms(median(issue_times))}",
            f"{median(redeem_times) / median(bare):.1f}x pass",
            f"< {REDEEM_TARGET_SECONDS:g} s",
            median(redeem_times) < REDEEM_TARGET_SECONDS,
        ))

        ports = json.loads(
            (h.home / "skupper/namespaces/west/runtime/ports.json").read_text())
        port = int(ports["inter-router"])
        detect: list[float] = []
        recover: list[float] = []
        for _ in range(rounds):
            _wait(lambda: _link_ready(h, "east", link), "the link to be ready")
            killed = time.perf_counter()
            os.kill(h.daemon_pid("west"), signal.SIGKILL)
            _wait(lambda: _link_ready(h, "east", link) is False, "east to notice")
            detect.append(time.perf_counter() - killed)
            restart = subprocess.Popen(
                [SKUPPER, "system", "start", "-n", "west"], env=h.env,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
            _wait(lambda: _port_open(port), "west's link port")
            reachable = time.perf_counter()
            _wait(lambda: _link_ready(h, "east", link) is True, "the link to come back")
            recover.append(time.perf_counter() - reachable)
            restart.wait(timeout=WAIT_LIMIT_SECONDS)
            h.remember_daemons()
        rows.append(Row(
            f"link not operational after remote kill -9 (n={rounds})",
            f"median {ms(median(detect))}, max {ms(max(detect))}",
            "-", "-", "< 10 s", max(detect) < 10.0,
        ))
        rows.append(Row(
            f"link back after remote restart, from port open (n={rounds})",
            f"median {ms(median(recover))}, max {ms(max(recover))}",
            "-", "-", f"< {RECOVERY_TARGET_SECONDS:g} s",
            max(recover) < RECOVERY_TARGET_SECONDS,
        ))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    rows = run(max(1, args.rounds))
    print(common.markdown_table(rows))
    print()
    print("\n".join(common.machine_info()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
