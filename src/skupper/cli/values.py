"""Command-line values checked without click: durations and bounded whole numbers."""

from __future__ import annotations

from skupper.base.durations import parse_duration
from skupper.base.errors import UsageError


def duration_value(text: str, option: str, *, minimum: float = 0.0) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"Invalid value for {option}", str(exc)) from None
    if seconds <= minimum:
        raise UsageError(f"Invalid value for {option}", f"{text!r} must be longer than zero")
    return seconds


def bounded_int(text: str, option: str, minimum: int, maximum: int) -> int:
    from skupper.base.text import printable

    try:
        # More digits than the bound has is out of range; int() is not asked to parse them.
        value = int(text) if len(text.strip()) <= len(str(maximum)) + 1 else maximum + 1
    except ValueError:
        raise UsageError(f"Invalid value for {option}",
                         f"{printable(repr(text), 40)} is not a whole number") from None
    if not minimum <= value <= maximum:
        raise UsageError(f"Invalid value for {option}",
                         f"it must be a whole number from {minimum} to {maximum}")
    return value
