"""printable(): untrusted text is one short, visible run of characters."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from skupper.base.text import is_printable, printable


def test_line_breaks_and_escapes_are_escaped() -> None:
    assert printable("east\r\nINFO forged line\x1b[2J") == "east\\x0d\\x0aINFO forged line\\x1b[2J"


def test_bidi_overrides_and_separators_are_escaped() -> None:
    assert printable("a\u202eb\u2028c\x85") == "a\\u202eb\\u2028c\\x85"


def test_long_text_is_cut_and_marked() -> None:
    assert printable("x" * 500, limit=10) == "x" * 10 + "..."


def test_plain_text_is_unchanged() -> None:
    assert printable("west-1.example.com") == "west-1.example.com"
    assert printable(42) == "42"


@given(st.text())
def test_output_is_always_safe_and_bounded(text: str) -> None:
    out = printable(text, limit=50)
    assert is_printable(out)
    assert len(out) <= 6 * 50 + 3
