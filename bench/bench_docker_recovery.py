"""How long a docker site's link takes to come back after its container's process crashes.

A docker site ``dk`` (link access on 127.0.0.1) and a local site ``lc`` linked to it, in a
hermetic data home. Each round SIGKILLs the container's main process by the host pid the
engine reports (``docker inspect -f {{.State.Pid}}``: a crash; ``docker kill`` would turn
the restart policy off), then times, from the kill:

- restart: until the engine runs the container again (a new host pid);
- link:    until the local site's outgoing link is Ready again (``skupper link status``).

Needs a running docker engine and the site image (``skupper system install --platform
docker --base-image ...``). Usage: ``.venv/bin/python bench/bench_docker_recovery.py
[--rounds N] [--engine docker|podman]``. The container and the local daemon are removed
at the end, on error too.
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

from common import LOOPBACK, Row, hermetic, machine_info, markdown_table, median

POLL_SECONDS = 0.05
ROUND_TIMEOUT_SECONDS = 60.0
# A crash costs the network a few seconds at most: the engine restarts at once and the
# local site's dialer retries with a short back-off.
TARGET_SECONDS = 10.0
BACKOFF_RESET_SECONDS = 11.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _inspect(engine: str, name: str) -> dict[str, object]:
    done = subprocess.run([engine, "inspect", "--type", "container", name],
                          capture_output=True, text=True, timeout=30, check=True)
    found: dict[str, object] = json.loads(done.stdout)[0]
    return found


def _host_pid(engine: str, name: str) -> int:
    state = _inspect(engine, name)["State"]
    assert isinstance(state, dict)
    return int(state["Pid"]) if state.get("Running") else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--engine", choices=("docker", "podman"), default="docker")
    args = parser.parse_args()
    engine, name = args.engine, "skupper-dk"
    restarts: list[float] = []
    links: list[float] = []
    with hermetic("skupper-bench-docker-") as h:
        h.env.pop("SKUPPER_PLATFORM")
        if "CONTAINERS_CONF" in os.environ:
            h.env["CONTAINERS_CONF"] = os.environ["CONTAINERS_CONF"]
        # Ports away from the defaults, which other sites on the machine may grab while
        # the container restarts (the daemon keeps the ports of its first start).
        runtime = h.home / "skupper" / "namespaces" / "dk" / "runtime"
        runtime.mkdir(parents=True, mode=0o700)
        runtime.parent.chmod(0o700)
        (runtime / "ports.json").write_text(json.dumps(
            {role: _free_port() for role in ("inter-router", "edge", "grant-server")}))
        try:
            h.skupper("site", "create", "dk", "--enable-link-access", "-n", "dk",
                      "--platform", engine)
            h.skupper("site", "create", "lc", "-n", "lc", "--platform", "systemd")
            token = h.home / "token.yaml"
            h.skupper("access-token", "issue", str(token), "-n", "dk")
            h.skupper("access-token", "redeem", str(token), "-n", "lc")
            for round_ in range(args.rounds):
                pid = _host_pid(engine, name)
                killed = time.monotonic()
                os.kill(pid, signal.SIGKILL)
                restarted = linked = 0.0
                while time.monotonic() - killed < ROUND_TIMEOUT_SECONDS:
                    if not restarted and _host_pid(engine, name) not in (0, pid):
                        restarted = time.monotonic() - killed
                    rows = h.skupper("link", "status", "-n", "lc").stdout.splitlines()[1:]
                    if restarted and rows and rows[0].split()[2] == "Ready":
                        linked = time.monotonic() - killed
                        break
                    time.sleep(POLL_SECONDS)
                if not linked:
                    raise RuntimeError(f"round {round_}: no Ready link within "
                                       f"{ROUND_TIMEOUT_SECONDS:g} s")
                restarts.append(restarted)
                links.append(linked)
                print(f"round {round_ + 1}: restarted after {restarted:.2f} s, link Ready "
                      f"after {linked:.2f} s", file=sys.stderr)
                # docker doubles its restart delay for a container that keeps crashing and
                # resets it once the container has run 10 s: each round is a first crash.
                time.sleep(BACKOFF_RESET_SECONDS)
        finally:
            h.skupper("site", "delete", "-n", "dk", check=False)
            subprocess.run([engine, "rm", "--force", name], capture_output=True, timeout=60,
                           check=False)
    print(markdown_table([
        Row(f"{engine}: kill -9 -> container running again (median of {len(restarts)})",
            f"{median(restarts):.2f} s (max {max(restarts):.2f} s)", "-", "-",
            f"< {TARGET_SECONDS:g} s", max(restarts) < TARGET_SECONDS),
        Row(f"{engine}: kill -9 -> link Ready again at the local site (median)",
            f"{median(links):.2f} s (max {max(links):.2f} s)", "-", "-",
            f"< {TARGET_SECONDS:g} s", max(links) < TARGET_SECONDS),
    ]))
    print("\n".join(machine_info()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
