"""The wrong-code budgets: per source and per grant, bounded in memory, never a lock."""

from __future__ import annotations

import pytest

from skupper.grants.limits import (
    GRANT_BURST,
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
        assert limits.admit("192.0.2.1") == 0.0
    wait = limits.admit("192.0.2.1")
    assert wait == pytest.approx(1 / SOURCE_PER_SECOND)
    assert retry_after(wait) == 1
    assert limits.admit("192.0.2.2") == 0.0  # another source is not affected
    clock.now += 1 / SOURCE_PER_SECOND
    assert limits.admit("192.0.2.1") == 0.0


def test_a_right_code_gives_its_reservation_back() -> None:
    limits = WrongCodeLimits(clock=Clock())
    for _ in range(SOURCE_BURST * 3):
        assert limits.admit("192.0.2.1") == 0.0
        limits.right_code("192.0.2.1")


def test_the_grant_budget_is_shared_by_every_source() -> None:
    clock = Clock()
    limits = WrongCodeLimits(clock=clock)
    assert [limits.wrong_code("g") for _ in range(GRANT_BURST)] == [0.0] * GRANT_BURST
    assert limits.wrong_code("g") > 0
    assert limits.wrong_code("other") == 0.0


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
        limits.admit(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
        limits.count(f"grant-{i}", wrong_code=True)
    assert len(limits.sources) == MAX_TRACKED
    assert len(limits.unrecorded) == MAX_TRACKED


def test_unrecorded_counts_are_taken_once_and_can_be_put_back() -> None:
    limits = WrongCodeLimits(clock=Clock())
    limits.count("g", wrong_code=True)
    limits.count("g", wrong_code=False)
    counts = limits.take_unrecorded("g")
    assert counts == Unrecorded(wrong_codes=1, rate_limited=2)
    assert limits.take_unrecorded("g") == Unrecorded()
    limits.put_back("g", counts)
    assert limits.take_unrecorded("g") == counts
