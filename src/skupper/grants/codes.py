"""Grant codes: generated from the OS's CSPRNG, compared in constant time, never logged."""

from __future__ import annotations

import hmac
import secrets
import string

# Upstream generates 24 alphanumeric characters: about 143 bits of entropy.
CODE_LENGTH = 24
_ALPHABET = string.ascii_letters + string.digits


def generate_code() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(CODE_LENGTH))


def codes_match(presented: bytes, expected: str) -> bool:
    return hmac.compare_digest(presented, expected.encode())
