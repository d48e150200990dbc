"""Random (version 4) UUIDs without importing ``uuid``.

``uuid`` imports ``platform``, which compiles a dozen regular expressions on the way:
a few milliseconds of ``skupper access-token issue``'s start-up, for two calls.
"""

from __future__ import annotations

import os


def random_uuid() -> str:
    """A random UUID in its canonical 36-character form, as ``str(uuid.uuid4())`` gives."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
