"""Sites on test hosts: the ``skupper`` command run inside a host, and link helpers."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hosts import Host, Network

from tests_support import SKUPPER, Skupper, table, wait_for


@dataclass
class HostSkupper(Skupper):
    """The ``skupper`` command run inside one test host (its own data home)."""

    host: Host | None = None

    def run(self, *args: str, check: bool = True, timeout: float = 60,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        assert self.host is not None
        for flag in ("-n", "--namespace"):
            if flag in args:
                self.namespaces.add(args[args.index(flag) + 1])
        self.namespaces.add("default")
        done = subprocess.run(self.host.exec_argv(SKUPPER, *args), env=self.env,
                              capture_output=True, text=True, timeout=timeout, input=input,
                              check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"skupper {' '.join(args)} at {self.host.name} exited "
                                 f"{done.returncode}\nstdout: {done.stdout}\n"
                                 f"stderr: {done.stderr}")
        return done

    def log(self, namespace: str = "default") -> str:
        path = self.namespace_dir(namespace) / "logs" / "daemon.log"
        return path.read_text(errors="replace") if path.exists() else ""


# --- helpers the tests share ------------------------------------------------------------


def issue(site: HostSkupper, file: Path, *extra: str) -> str:
    done = site.run("access-token", "issue", str(file), *extra)
    match = re.search(r'Grant "([^"]+)" is ready', done.stdout + done.stderr)
    assert match, done.stdout
    return match.group(1)


def link(issuer: HostSkupper, redeemer: HostSkupper, tmp_path: Path, *extra: str) -> str:
    """``redeemer`` redeems a token ``issuer`` issued; the link's name, once both see it."""
    file = tmp_path / f"token-{time.monotonic_ns()}.yaml"
    issue(issuer, file, *extra)
    redeemer.run("access-token", "redeem", str(file))
    name = str(outgoing(redeemer)[-1]["metadata"]["name"])
    wait_for("the issuing site to see the link", lambda: incoming_ready(issuer, name), 15)
    return name


def rows(site: HostSkupper) -> list[dict[str, str]]:
    return table(site.run("link", "status").stdout)


def outgoing(site: HostSkupper) -> list[dict[str, Any]]:
    return list(json.loads(site.run("link", "status", "-o", "json").stdout)["items"])


def link_state(site: HostSkupper, name: str) -> dict[str, str]:
    """The link's row in ``skupper link status`` (outgoing or incoming), or {}."""
    for row in rows(site):
        if row["NAME"] == name:
            return row
    return {}


def incoming_ready(site: HostSkupper, name: str) -> bool:
    row = link_state(site, name)
    return row.get("DIRECTION") == "incoming" and row.get("STATUS") == "Ready"


def outgoing_ready(site: HostSkupper, name: str) -> bool:
    row = link_state(site, name)
    return row.get("DIRECTION") == "outgoing" and row.get("STATUS") == "Ready"


def expose(server_site: HostSkupper, client_site: HostSkupper, name: str,
           server_port: int, listen_port: int) -> None:
    """A connector at ``server_site`` to 127.0.0.1:server_port there, a listener at
    ``client_site`` on listen_port; returns once the listener has a matching connector."""
    server_site.run("connector", "create", name, str(server_port))
    client_site.run("listener", "create", name, str(listen_port), "--wait", "ready",
                    "--timeout", "30s")


def linked_pair(network: Network, site_at: Callable[..., HostSkupper], tmp_path: Path,
                ) -> tuple[Host, Host, HostSkupper, HostSkupper, str]:
    """Hosts west and east, a site on each (west with link access), east linked to west:
    (west host, east host, west site, east site, the link's name)."""
    west_host, east_host = network.add_host("west"), network.add_host("east")
    west = site_at(west_host, "west")
    east = site_at(east_host, "east", link_access=False)
    return west_host, east_host, west, east, link(west, east, tmp_path)
