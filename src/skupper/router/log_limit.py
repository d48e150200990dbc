"""A bound on how many log lines one kind of event may write: a hostile peer that
repeats a refused request many times a second must not fill the log.

Up to ``burst`` lines pass at once; after that one line per ``per_seconds / burst``.
The lines held back are counted and said in one line when logging resumes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class LogLimiter:
    def __init__(self, logger: logging.Logger, burst: int = 20, per_seconds: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = logger
        self._burst = float(burst)
        self._rate = burst / per_seconds
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()
        self.suppressed = 0

    def info(self, message: str, *args: object) -> None:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens < 1.0:
            self.suppressed += 1
            return
        self._tokens -= 1.0
        if self.suppressed:
            self._log.info("(%d similar lines not logged: too many in a short time)",
                           self.suppressed)
            self.suppressed = 0
        self._log.info(message, *args)
