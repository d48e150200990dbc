"""Checks of the spec fields people give, shared by the create commands and ``system apply``.

Each check returns why a value is refused ("" when it is fine), in words a one-line error
can carry, so a command line and a YAML document are held to exactly the same bounds.
"""

from __future__ import annotations

import ipaddress
import re

from skupper.resources.model import valid_name

# Sites, listeners and connectors also name things that must fit a DNS label.
LABEL_LENGTH = 63

LINK_ACCESS_TYPES = ("none", "default", "route", "loadbalancer")
SERVICE_TYPES = ("tcp",)

_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?"
                       r"(\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*$")

ROUTING_KEY_RULE = ("use lower-case letters, digits, '-' and '.', starting and ending with a "
                    "letter or digit")


def routing_key_problem(key: object) -> str:
    if not isinstance(key, str) or not valid_name(key):
        return ROUTING_KEY_RULE
    return ""


def host_problem(host: object) -> str:
    if not isinstance(host, str):
        return "a valid IP address or hostname is expected"
    try:
        ipaddress.ip_address(host)
        return ""
    except ValueError:
        pass
    return "" if _HOSTNAME.fullmatch(host) else "a valid IP address or hostname is expected"


def port_number(value: object) -> int | None:
    """``value`` as a port (1-65535), or None; a YAML integer or a string of digits."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        if not value.isascii() or not value.isdigit() or len(value) > 5:
            return None
        value = int(value)
    if isinstance(value, int) and 0 < value < 65536:
        return value
    return None
