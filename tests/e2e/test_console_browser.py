"""The live console in a real browser: Debian's Chromium, driven by Playwright.

Two linked sites with an echo service between them. The console of the dialing site
must show both sites and the link as text, a counter that moves while traffic flows,
and the link going down within seconds when the other site stops. The test saves a
screenshot (into SKUPPER_SCREENSHOT_DIR too, when set: that is how the README's is made).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_observability import observer
from test_services import LOOPBACK, Net, echo

from tests_support import Skupper, hermetic_env

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
# True once the echo service's bytes-per-second cell shows a figure above zero.
MOVING_RATE = """() => {
  const c = document.querySelector('#services tr[data-service="echo"] .service-rate');
  return c !== null && /[1-9]/.test(c.textContent) && c.textContent.includes('B/s');
}"""
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


def _browser_or_skip() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if sync_playwright is None or not Path(CHROMIUM).exists():
        why = f"needs Playwright for Python and {CHROMIUM} (Debian's chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the browser test: it {why}")
        pytest.skip(f"the console's browser test {why}")
    return sync_playwright


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Net]:
    home = tmp_path / "home"
    home.mkdir()
    skupper = Skupper(home=home, env=hermetic_env(home))
    net = Net(skupper, tmp_path)
    try:
        skupper.run("site", "create", "west", "-n", "west", "--enable-link-access")
        skupper.run("site", "create", "east", "-n", "east")
        net.link("west", "east")
        net.connector("west", "echo", net.serve(echo))
        net.echo_port = net.listener("east", "echo")  # type: ignore[attr-defined]
        net.wait_ready("east", "echo")
        yield net
    finally:
        net.close()


def _traffic(port: int, stop: threading.Event) -> None:
    """Echo 64 KiB chunks through the listener until told to stop (at most 30 s)."""
    deadline = time.monotonic() + 30
    chunk = b"x" * 65536
    with socket.create_connection((LOOPBACK, port), timeout=10) as sock:
        while not stop.is_set() and time.monotonic() < deadline:
            sock.sendall(chunk)
            got = 0
            while got < len(chunk):
                got += len(sock.recv(65536))
            time.sleep(0.01)


def test_the_console_draws_the_network_and_follows_it(pair: Net, tmp_path: Path) -> None:
    sync_playwright = _browser_or_skip()
    url = observer(pair, "east")["console"]
    stop = threading.Event()
    pumping = threading.Thread(target=_traffic, args=(pair.echo_port, stop),  # type: ignore[attr-defined]
                               daemon=True)
    shot = tmp_path / "console.png"
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True,
            args=FLAGS, viewport={"width": 1000, "height": 900})
        try:
            page = context.new_page()
            page.goto(url)
            page.wait_for_selector('#graph [data-site="west"]', timeout=15_000)
            page.wait_for_selector('#graph [data-site="east"]', timeout=5_000)
            assert page.inner_text("#site-name") == "at site east"
            link_row = page.locator("#links tbody tr")
            page.wait_for_function(
                "() => document.querySelectorAll('#links tbody tr').length === 1", timeout=10_000)
            cells = link_row.first.locator("td").all_inner_texts()
            assert cells[:2] == ["east", "west"] and cells[4] == "up", cells
            assert "echo" in page.locator("#services").inner_text()
            # A counter moves while traffic flows (the page polls once a second).
            pumping.start()
            page.wait_for_function(MOVING_RATE, timeout=15_000)
            open_now = page.locator('#services tr[data-service="echo"] .open-connections')
            assert open_now.inner_text() == "1"
            page.screenshot(path=str(shot), full_page=True)
            stop.set()
            pumping.join(timeout=10)
            # The other site stops: the link shows down within seconds.
            pair.run("system", "stop", "-n", "west")
            started = time.monotonic()
            page.wait_for_function(
                """() => [...document.querySelectorAll('#links tbody tr td.down')].length === 1""",
                timeout=15_000)
            assert time.monotonic() - started < 15
            assert page.locator("#graph .link.down").count() == 1
        finally:
            stop.set()
            context.close()
    assert shot.stat().st_size > 10_000
    target = os.environ.get("SKUPPER_SCREENSHOT_DIR")
    if target:
        shutil.copy(shot, Path(target) / "console.png")
