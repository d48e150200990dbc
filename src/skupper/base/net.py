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


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def is_wildcard(host: str) -> bool:
    """0.0.0.0 or ::, "every interface"."""
    return is_ip_literal(host) and ipaddress.ip_address(host).is_unspecified


def is_local_address(host: str) -> bool:
    """Whether ``host`` is an IP address of this machine (one we could listen on)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, 0))
        except OSError:
            return False
    return True


def bind_address_for(advertised_host: str, override: str | None) -> str:
    """Where the link listeners and the grant server listen, for an advertised host.

    - ``SKUPPER_BIND_HOST`` (``override``), when set, always;
    - a loopback host: loopback, since such a site is only reachable on this machine;
    - an IP address of this machine: that address only, so a multi-homed host does not
      accept links on interfaces it never advertised;
    - anything else, a DNS name or an address that is not ours (a NAT or load balancer
      in front of this host): every interface, because the address remote sites dial is
      not one this host can bind.
    """
    if override:
        return override
    if is_loopback(advertised_host):
        return "::1" if advertised_host == "::1" else "127.0.0.1"
    if is_local_address(advertised_host):
        return advertised_host
    return "::" if ":" in advertised_host else "0.0.0.0"


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


def only_loopback(host: str) -> bool:
    """Whether ``host`` is "localhost" or every address it resolves to is a loopback one.

    A name that does not resolve here is not called loopback: remote sites may know it.
    """
    if host.rstrip(".").lower() == "localhost" or is_loopback(host):
        return True
    try:
        found = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return False
    return bool(found) and all(is_loopback(str(entry[4][0]).split("%")[0]) for entry in found)
