"""Sockets bound before a server starts, so "the first free port at or above N" is exact."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

# How far above the preferred port to look before giving up.
PORT_SEARCH_SPAN = 200


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def bind_address_for(advertised_host: str, override: str | None) -> str:
    """Listen where remote sites can reach us, but stay on loopback for a loopback host.

    A site advertised as 127.0.0.1 is only reachable on this machine, so it has no
    reason to accept connections on other interfaces.
    """
    if override:
        return override
    if is_loopback(advertised_host):
        return "::1" if advertised_host == "::1" else "127.0.0.1"
    return "0.0.0.0"


def bind_listening(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio turns on TCP_NODELAY only for sockets that say so,
    # and small link frames must not wait 40 ms for Nagle.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(512)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def bind_first_free(host: str, preferred: Iterable[int], start: int) -> socket.socket:
    """Bind the first port of ``preferred`` that is free, else the first free one >= start."""
    tried: set[int] = set()
    for port in list(preferred) + list(range(start, start + PORT_SEARCH_SPAN)):
        if port in tried or port <= 0:
            continue
        tried.add(port)
        try:
            return bind_listening(host, port)
        except OSError:
            continue
    raise OSError(f"no free port on {host} from {start} to {start + PORT_SEARCH_SPAN - 1}")
