"""Go-style durations: what the CLI accepts, what grants store, what users read."""

from __future__ import annotations

import pytest

from skupper.base.durations import format_duration, humanize_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("15m", 900.0),
        ("24h", 86400.0),
        ("1h30m", 5400.0),
        ("90s", 90.0),
        ("500ms", 0.5),
        ("1.5h", 5400.0),
        ("2h0m0.5s", 7200.5),
        (".5h", 1800.0),
        ("0", 0.0),
        ("-15m", -900.0),
        ("100us", 1e-4),
        ("100µs", 1e-4),
        ("7ns", 7e-9),
    ],
)
def test_parse_duration_accepts_go_syntax(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["", "   ", "banana", "15", "1d", "1h30", "15 m", "m", "-", "1e3s"]
)
def test_parse_duration_rejects_what_go_rejects(text: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        parse_duration(text)
    # The reason names the input (or says it is empty), so the CLI can show it as is.
    assert repr(text) in str(excinfo.value) or "empty" in str(excinfo.value)


def test_parse_duration_rejects_durations_go_cannot_hold() -> None:
    # Go durations are int64 nanoseconds: time.ParseDuration refuses anything longer
    # than about 2562047h. Accepting more once crashed the grant reconciler.
    assert parse_duration("2562047h") == 2562047 * 3600.0
    for text in ("2562048h", "100000000h"):
        with pytest.raises(ValueError):
            parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "canonical"),
    [
        (0, "0s"),
        (900, "15m0s"),
        (86400, "24h0m0s"),
        (5400, "1h30m0s"),
        (90, "1m30s"),
        (0.5, "500ms"),
        (1.5, "1.5s"),
        (7200.5, "2h0m0.5s"),
        (59, "59s"),
        (-900, "-15m0s"),
    ],
)
def test_format_duration_is_go_canonical(seconds: float, canonical: str) -> None:
    assert format_duration(seconds) == canonical


@pytest.mark.parametrize("text", ["15m", "24h", "1h30m", "90s", "500ms", "1.5h", "2h0m0.5s"])
def test_format_then_parse_round_trips(text: str) -> None:
    seconds = parse_duration(text)
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("seconds", "canonical"), [(1.5e-6, "1.5µs"), (1e-6, "1µs"), (1e-7, "100ns"), (0.001, "1ms")]
)
def test_format_duration_below_a_millisecond_uses_go_units(seconds: float, canonical: str) -> None:
    assert format_duration(seconds) == canonical


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("15m", "15 minutes"),
        ("24h", "24 hours"),
        ("1h30m", "1 hour and 30 minutes"),
        ("48h", "2 days"),
        ("1m", "1 minute"),
        ("1h", "1 hour"),
        ("90s", "1 minute and 30 seconds"),
        ("2s", "2 seconds"),
        ("25h", "25 hours"),
        ("1h1m1s", "1 hour, 1 minute and 1 second"),
    ],
)
def test_humanize_duration(text: str, words: str) -> None:
    assert humanize_duration(parse_duration(text)) == words


def test_humanize_below_a_second() -> None:
    assert humanize_duration(0.001) == "less than a second"
