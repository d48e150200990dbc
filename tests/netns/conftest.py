"""Fixtures for sites on separate hosts (network namespaces joined by a WAN router).

Root-only: without root or the tools the tests skip with one line, except with
CI=true, where a missing tool is a failure (CI runs as root and must run them).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hosts import Host, Network, tools_missing
from sites import HostSkupper

from tests_support import hermetic_env

_subnets = itertools.count((os.getpid() % 16) * 4)
_missing: list[str | None] = []


def _require_tools() -> None:
    if not _missing:
        _missing.append(tools_missing())
    reason = _missing[0]
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def network(tmp_path: Path, allow_test_hosts: Callable[[dict[str, str]], None]
            ) -> Iterator[Network]:
    """An empty WAN; add hosts with ``network.add_host(label)``. Removed at the end."""
    _require_tools()
    net = Network(workdir=tmp_path, subnet=next(_subnets) % 64)
    original = net.add_host

    def add_host(label: str) -> Host:
        host = original(label)
        allow_test_hosts({h.address: h.name for h in net.hosts.values()})
        return host

    net.add_host = add_host  # type: ignore[method-assign]
    try:
        yield net
    finally:
        net.close()


@pytest.fixture
def site_at(tmp_path: Path) -> Iterator[Callable[..., HostSkupper]]:
    """``site_at(host, name, *create_args, env=...)``: a site on that host, running."""
    made: list[HostSkupper] = []

    def create(host: Host, name: str, *args: str, env: dict[str, str] | None = None,
               link_access: bool = True) -> HostSkupper:
        home = tmp_path / f"home-{name}"
        home.mkdir()
        environment = hermetic_env(home)
        environment["SKUPPER_LINK_ACCESS_HOST"] = host.address
        environment.update(env or {})
        runner = HostSkupper(home=home, env=environment, host=host)
        made.append(runner)
        extra = ["--enable-link-access"] if link_access else []
        runner.run("site", "create", name, *extra, *args)
        return runner

    try:
        yield create
    finally:
        for runner in made:
            runner.kill_daemons()
