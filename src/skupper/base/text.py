"""Text that came from outside (the network, a file, a peer), made safe to log or show.

A hostile peer can put anything in a name, a header or a hello: CR and LF forge log
lines, ESC sequences repaint a terminal, bidi overrides reorder what a reader sees, and a
long string floods a log. ``printable`` escapes all of those and bounds the length, so
one untrusted value is always one short, visible run of characters.
"""

from __future__ import annotations

import re

# C0 and C1 controls, DEL, the Unicode line and paragraph separators, and the bidi
# embedding, override and isolate marks.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")

DEFAULT_LIMIT = 200


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(value: object, limit: int = DEFAULT_LIMIT) -> str:
    """``value`` as text with every unsafe character escaped, at most ``limit`` long.

    Longer text is cut and marked with ``...`` (before escaping, so the result is at
    most ``6 * limit + 3`` characters).
    """
    text = value if isinstance(value, str) else str(value)
    cut = len(text) > limit
    if cut:
        text = text[:limit]
    text = _UNSAFE.sub(_escape, text)
    return text + "..." if cut else text


def is_printable(text: str) -> bool:
    """Whether ``text`` holds no character that ``printable`` would escape."""
    return _UNSAFE.search(text) is None
