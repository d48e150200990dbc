"""The link hello: what each end says about itself, parsed as untrusted input.

A hello is one JSON line on a link's first stream. Everything in it comes from the
other end, which may be hostile: the line is bounded as a whole, every field has a
type and a bound, names must be DNS-1123 names and the site id a canonical UUID, so
what reaches a table, a log or the network's adverts is always short and printable.
Unknown fields are dropped (newer sites may add some), so nothing unchecked is kept.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from skupper.base.text import printable
from skupper.resources.model import valid_name

PROTOCOL_NAME = "skupper-py-link"
PROTOCOL_VERSION = 1
# A hello is a few hundred bytes; the whole line (newline included) may not exceed this.
MAX_HELLO_BYTES = 4096
# The longest refusal reason a hello may carry (it is shown to a user and logged).
MAX_ERROR_LENGTH = 300
ROLES = ("inter-router", "edge")
# Which stream headers this site reads (router.stream_header): 2 is JSON lines and
# binary. Sites of the first version say nothing, and are sent JSON lines only.
STREAM_HEADERS = 2
# Versions are small integers; anything past this is nonsense, not a newer protocol.
MAX_VERSION = 1_000


class HelloError(ValueError):
    """A hello that is malformed or breaks a bound; the text says which, safely."""


def canonical_uuid(value: object) -> bool:
    """Whether ``value`` is a UUID in its canonical 36-character lowercase form."""
    if not isinstance(value, str) or len(value) != 36:
        return False
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def encode_hello(hello: dict[str, Any]) -> bytes:
    return json.dumps(hello, separators=(",", ":")).encode() + b"\n"


def parse_hello(line: bytes, *, from_dialer: bool) -> dict[str, Any]:
    """The checked fields of a remote hello; HelloError when it is not acceptable.

    ``from_dialer``: the hello came from the dialing side, so it must name its link.
    A hello carrying ``error`` (the remote refused us) only needs protocol and version.
    """
    if len(line) > MAX_HELLO_BYTES:
        raise HelloError(f"the link hello is over {MAX_HELLO_BYTES} bytes")
    try:
        doc = json.loads(line)
    except ValueError:  # also: integers past Python's digit limit
        raise HelloError("the link hello is malformed") from None
    if not isinstance(doc, dict) or doc.get("protocol") != PROTOCOL_NAME:
        raise HelloError("the link hello is not for this link protocol")
    version = doc.get("version")
    if not _small_int(version):
        raise HelloError("the link hello has no valid protocol version")
    if version != PROTOCOL_VERSION:
        raise HelloError(f"the link hello is for protocol version {version}, "
                         f"this site speaks {PROTOCOL_VERSION}")
    hello: dict[str, Any] = {"protocol": PROTOCOL_NAME, "version": version}
    error = doc.get("error")
    if error and not from_dialer:
        hello["error"] = printable(error if isinstance(error, str) else "refused",
                                   MAX_ERROR_LENGTH)
        return hello
    site_id, site_name = doc.get("siteId"), doc.get("siteName")
    if not canonical_uuid(site_id):
        raise HelloError("the link hello has no valid site id (a canonical UUID)")
    if not isinstance(site_name, str) or not valid_name(site_name):
        raise HelloError("the link hello has no valid site name (DNS-1123)")
    hello["siteId"], hello["siteName"] = site_id, site_name
    link = doc.get("link")
    if from_dialer:
        if not isinstance(link, str) or not valid_name(link):
            raise HelloError("the link hello has no valid link name (DNS-1123)")
        hello["link"] = link
    stream_headers = doc.get("streamHeader")
    if _small_int(stream_headers):
        hello["streamHeader"] = stream_headers
    role = doc.get("role")
    if isinstance(role, str) and role in ROLES:
        hello["role"] = role
    return hello


def _small_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_VERSION
