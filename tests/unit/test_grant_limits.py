"""The wrong-code budgets: per source and per grant, bounded in memory, never a lock."""

from __future__ import annotations

import pytest

from skupper.grants.limits import (
    GRANT_BURST,
    MAX_HOLD_SECONDS,
    MAX_TRACKED,
    SOURCE_BURST,
    SOURCE_PER_SECOND,
    Buckets,
    Unrecorded,
    WrongCodeLimits,
    retry_after,
    source_key,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(("remote", "key"), [
    ("192.0.2.7", "192.0.2.7"),
    ("::ffff:192.0.2.7", "192.0.2.7"),
    ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
    ("", ""),
    ("x" * 100, "x" * 64),
])
def test_a_source_is_an_address_or_an_ipv6_64(remote: str, key: str) -> None:
    assert source_key(remote) == key


def test_a_source_out_of_wrong_codes_waits_and_refills() -> None:
    clock = Clock()
    limits = WrongCodeLimits(clock=clock)
    for _ in range(SOURCE_BURST):
        assert limits.wrong_code("192.0.2.1", "g") == 0.0
    wait = limits.wrong_code("192.0.2.1", "g")
    assert wait == pytest.approx(1 / SOURCE_PER_SECOND)
    assert retry_after(wait) == 1
    assert limits.hold(wait) == pytest.approx(min(wait, MAX_HOLD_SECONDS))
    assert limits.hold(3600) == MAX_HOLD_SECONDS
    assert limits.wrong_code("192.0.2.2", "g") == 0.0  # another source is not affected
    assert limits.wrong_code("2001:db8::1", "g") == 0.0
    clock.now += 1 / SOURCE_PER_SECOND
    assert limits.wrong_code("192.0.2.1", "g") == 0.0


def test_one_ipv6_64_is_one_source() -> None:
    limits = WrongCodeLimits(clock=Clock())
    for i in range(SOURCE_BURST):
        assert limits.wrong_code(f"2001:db8:0:1::{i + 1:x}", "g") == 0.0
    assert limits.wrong_code("2001:db8:0:1:ffff::", "g") > 0
    assert limits.wrong_code("2001:db8:0:2::1", "g") == 0.0


def test_the_grant_budget_is_shared_by_every_source() -> None:
    clock = Clock()
    limits = WrongCodeLimits(clock=clock)
    waits = [limits.wrong_code(f"10.0.0.{i}", "g") for i in range(GRANT_BURST)]
    assert waits == [0.0] * GRANT_BURST
    assert limits.wrong_code("10.0.1.1", "g") > 0
    assert limits.wrong_code("10.0.1.1", "other") == 0.0


def test_buckets_keep_at_most_max_keys_least_recently_used_first() -> None:
    clock = Clock()
    buckets = Buckets(1, 1.0, 3, clock)
    for key in "abc":
        assert buckets.take(key) == 0.0
    assert buckets.take("a") > 0  # touched: now the newest
    assert buckets.take("d") == 0.0  # evicts "b", the least recently used
    assert len(buckets) == 3
    assert buckets.take("b") == 0.0  # forgotten, so full again
    assert buckets.take("a") > 0


def test_memory_stays_bounded_under_address_rotation() -> None:
    limits = WrongCodeLimits(clock=Clock())
    for i in range(MAX_TRACKED * 2):
        limits.wrong_code(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", f"grant-{i}")
        limits.count(f"grant-{i}")
    assert len(limits.sources) == MAX_TRACKED
    assert len(limits.grants) == MAX_TRACKED
    assert len(limits.unrecorded) == MAX_TRACKED


def test_unrecorded_counts_are_taken_once_and_can_be_put_back() -> None:
    limits = WrongCodeLimits(clock=Clock())
    limits.count("g")
    limits.count("g")
    counts = limits.take_unrecorded("g")
    assert counts == Unrecorded(wrong_codes=2, rate_limited=2)
    assert limits.take_unrecorded("g") == Unrecorded()
    limits.put_back("g", counts)
    assert limits.take_unrecorded("g") == counts
