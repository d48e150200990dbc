"""Which event loop a site daemon runs: uvloop when it is installed, else asyncio's own.

uvloop (a C event loop over libuv) moves link traffic with less CPU per byte and per
connection than asyncio's pure-Python loop and TLS layer (bench/bench_data_plane.py).
The data plane runs on both (``router.link_transport``), so the standard loop stays a
complete fallback where uvloop is not installed.

``SKUPPER_EVENT_LOOP`` forces one: ``asyncio`` or ``uvloop`` (``auto``, the default:
uvloop if importable). The tests set it to run the daemons on each loop.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from skupper.base.errors import SkupperError

ENV_VAR = "SKUPPER_EVENT_LOOP"
CHOICES = ("auto", "asyncio", "uvloop")

T = TypeVar("T")


def chosen(environ: dict[str, str] | None = None) -> str:
    """``uvloop`` or ``asyncio``: what ``SKUPPER_EVENT_LOOP`` asks for, or what is installed.

    Raises SkupperError for a value not in CHOICES, or for uvloop asked for and missing.
    """
    wanted = (environ if environ is not None else os.environ).get(ENV_VAR, "auto") or "auto"
    if wanted not in CHOICES:
        raise SkupperError(f"{ENV_VAR}={wanted} is not an event loop this daemon knows",
                           f"it must be one of {', '.join(CHOICES)}",
                           f"Unset {ENV_VAR}, or set it to asyncio or uvloop.")
    if wanted == "asyncio":
        return "asyncio"
    if _uvloop_factory() is not None:
        return "uvloop"
    if wanted == "uvloop":
        raise SkupperError(f"{ENV_VAR}=uvloop but uvloop is not installed",
                           "the uvloop package cannot be imported",
                           "Install it (pip install uvloop) or set SKUPPER_EVENT_LOOP=asyncio.")
    return "asyncio"


def loop_factory(kind: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """A function making a new event loop of ``kind`` (as ``chosen`` returns it)."""
    if kind == "uvloop":
        factory = _uvloop_factory()
        if factory is not None:
            return factory
    return asyncio.new_event_loop


def run(main: Coroutine[Any, Any, T], kind: str) -> T:
    """``asyncio.run(main)`` on an event loop of ``kind``."""
    with asyncio.Runner(loop_factory=loop_factory(kind)) as runner:
        return runner.run(main)


def _uvloop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
