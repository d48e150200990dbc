"""Capped, jittered exponential backoff for redialing."""

from __future__ import annotations

import random

# First retry after about 0.1 s; never wait longer than 2 s, so a link comes back
# within a couple of seconds of its remote site becoming reachable.
BACKOFF_BASE_SECONDS = 0.1
BACKOFF_CAP_SECONDS = 2.0


def backoff_delay(
    attempt: int,
    *,
    base: float = BACKOFF_BASE_SECONDS,
    cap: float = BACKOFF_CAP_SECONDS,
    rng: random.Random | None = None,
) -> float:
    """Delay before retry number ``attempt`` (0-based): half to all of min(cap, base*2^n).

    The jitter spreads the redials of many links that lost the same remote.
    """
    ceiling = min(cap, base * float(1 << min(attempt, 30)))
    jitter: float = (rng or random).random()
    return ceiling * (0.5 + 0.5 * jitter)
