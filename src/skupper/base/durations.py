"""Go-style durations (``15m``, ``24h``, ``1h30m``, ``90s``, ``500ms``).

Upstream Skupper stores durations as Go ``time.Duration`` strings, so the same
syntax is accepted here and written back in Go's canonical form.
"""

from __future__ import annotations

import re

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
# Go durations are int64 nanoseconds: about 2,562,047 hours.
MAX_DURATION_SECONDS = (2**63 - 1) / 1e9
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Seconds in a Go duration string; ValueError with a readable reason if invalid."""
    s = text.strip()
    if not s:
        raise ValueError("a duration cannot be empty")
    sign = 1.0
    if s[0] in "+-":
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    pos = 0
    total = 0.0
    while pos < len(s):
        match = _PART.match(s, pos)
        if match is None:
            raise ValueError(
                f"{text!r} is not a duration (use a number and a unit, such as 15m, 24h or 1h30m)"
            )
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos == 0:
        raise ValueError(f"{text!r} is not a duration")
    if total > MAX_DURATION_SECONDS:
        raise ValueError(f"{text!r} is longer than the longest duration (about 292 years)")
    return sign * total


def format_duration(seconds: float) -> str:
    """Go's canonical form: ``15m0s``, ``24h0m0s``, ``1h30m0s``, ``1.5s``, ``0s``."""
    if seconds == 0:
        return "0s"
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 1:
        # Go's canonical form switches unit below a millisecond and a microsecond.
        for scale, unit in ((1e3, "ms"), (1e6, "µs"), (1e9, "ns")):
            value = seconds * scale
            if value >= 1 or unit == "ns":
                return f"{sign}{round(value, 6):g}{unit}"
    whole_hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    secs_text = f"{secs:.9f}".rstrip("0").rstrip(".")
    if whole_hours:
        return f"{sign}{int(whole_hours)}h{int(minutes)}m{secs_text}s"
    if minutes:
        return f"{sign}{int(minutes)}m{secs_text}s"
    return f"{sign}{secs_text}s"


def _plural(count: int, unit: str) -> str:
    return f"{count} {unit}" if count == 1 else f"{count} {unit}s"


def humanize_duration(seconds: float) -> str:
    """Words for a user: ``15 minutes``, ``24 hours``, ``1 hour and 30 minutes``."""
    total = round(seconds)
    if total < 1:
        return "less than a second"
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    # Whole days read better than 48 hours; "24 hours" reads better than "1 day".
    if days >= 2 and not (hours or minutes or secs):
        return _plural(days, "day")
    hours += days * 24
    parts = [
        _plural(n, unit)
        for n, unit in ((hours, "hour"), (minutes, "minute"), (secs, "second"))
        if n
    ]
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]
