"""Slowing down wrong codes without ever locking out the token's holder.

A code is 24 characters from the OS's CSPRNG (~143 bits): guessing it is hopeless at
any rate, so nothing here has to stop a guesser outright. What it must do is keep wrong
codes from costing the site work (a store write and a ledger entry each) and, above
all, never let anyone's wrong codes refuse the real holder, which a permanent lock after
N wrong codes did. So the code is always compared first, in constant time: a right code
is never refused or slowed for rate reasons, whoever else shares its address (a NAT, a
load balancer, the same host). Only wrong codes are charged, to two token buckets:

- per source (an IPv4 address, or an IPv6 /64: one host can own a whole /64), so one
  loud client is answered 429 after a few mistakes;
- per grant, across all sources, so an attacker rotating addresses cannot make the
  grant write a ledger entry per guess.

A wrong code within both budgets is answered 403 and recorded in the grant's ledger.
Beyond either it is answered 429 "try again in N s" with Retry-After, after a hold of up
to ``MAX_HOLD_SECONDS`` (so a client that ignores Retry-After is slowed all the same),
and only counted: the counts reach the grant about once a second.

Memory is bounded: each table keeps at most ``MAX_TRACKED`` buckets, least recently used
dropped first (a dropped bucket is a full one, which is what a forgotten source gets).
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

# A redeemer that mistypes a few times is never slowed; a script is, to one a second.
SOURCE_BURST = 10
SOURCE_PER_SECOND = 1.0
# All sources together, per grant: what bounds the store writes wrong codes cause.
GRANT_BURST = 30
GRANT_PER_SECOND = 10.0
MAX_TRACKED = 4096
# A 429 is answered after at most this long: it slows a client that retries at once,
# and is short enough that a held connection costs little.
MAX_HOLD_SECONDS = 1.0


def source_key(remote: str) -> str:
    """The unit a source is limited by: the address, or its /64 for IPv6."""
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return remote[:64]  # not an address (a Unix socket): one bucket per peer string
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class Buckets:
    """Token buckets by key: ``burst`` tokens, refilled at ``per_second``, LRU-bounded."""

    def __init__(self, burst: int, per_second: float, max_keys: int,
                 clock: Callable[[], float]) -> None:
        self._burst = float(burst)
        self._rate = per_second
        self._max = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def _bucket(self, key: str) -> _Bucket:
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(self._burst, now)
            self._buckets[key] = bucket
            while len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
        else:
            bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.stamp) * self._rate)
            bucket.stamp = now
            self._buckets.move_to_end(key)
        return bucket

    def take(self, key: str) -> float:
        """Take one token: 0.0 if taken, else the seconds until one is there (none taken)."""
        bucket = self._bucket(key)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self._rate


@dataclass
class Unrecorded:
    """Attempts answered 429 and not written one by one: added to the grant later."""

    wrong_codes: int = 0
    rate_limited: int = 0


@dataclass
class WrongCodeLimits:
    """The grant server's two budgets of wrong codes, and what they kept out of the store."""

    clock: Callable[[], float] = time.monotonic
    max_hold: float = MAX_HOLD_SECONDS
    sources: Buckets = field(init=False)
    grants: Buckets = field(init=False)
    # Grant name -> counts still to be written on the grant (bounded by the grants).
    unrecorded: dict[str, Unrecorded] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sources = Buckets(SOURCE_BURST, SOURCE_PER_SECOND, MAX_TRACKED, self.clock)
        self.grants = Buckets(GRANT_BURST, GRANT_PER_SECOND, MAX_TRACKED, self.clock)

    def wrong_code(self, remote: str, grant: str) -> float:
        """Charge one wrong code for ``grant`` from ``remote``.

        0.0: within both budgets, record it. Otherwise the seconds until the budget that
        ran out has room again; the attempt is then only counted (``count``).
        """
        wait = self.sources.take(source_key(remote))
        if wait:
            return wait
        return self.grants.take(grant)

    def hold(self, wait: float) -> float:
        """How long to hold a 429 before answering it."""
        return min(wait, self.max_hold)

    def count(self, grant: str) -> None:
        """A wrong code answered 429: counted, to be written onto the grant later."""
        if grant not in self.unrecorded and len(self.unrecorded) >= MAX_TRACKED:
            return  # more grants with pending counts than a site has: drop, stay bounded
        pending = self.unrecorded.setdefault(grant, Unrecorded())
        pending.rate_limited += 1
        pending.wrong_codes += 1

    def take_unrecorded(self, grant: str) -> Unrecorded:
        return self.unrecorded.pop(grant, None) or Unrecorded()

    def put_back(self, grant: str, counts: Unrecorded) -> None:
        """Counts whose write failed: kept for the next one."""
        pending = self.unrecorded.setdefault(grant, Unrecorded())
        pending.wrong_codes += counts.wrong_codes
        pending.rate_limited += counts.rate_limited


def retry_after(seconds: float) -> int:
    """Whole seconds for a Retry-After header: at least 1."""
    return max(1, math.ceil(seconds))
