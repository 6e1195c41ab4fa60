"""Sliding-window counters of the mint limits, with an injected clock."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.service_support import make_settings
from ticketd.batching import CommandBatcher
from ticketd.service.ratelimit import Limited, MintLimits, Rate


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def client(any_async_redis: Any) -> Any:
    return any_async_redis


def limits(client: Any, clock: Clock, **settings: Any) -> MintLimits:
    values = {
        "rate_limit_per_ip": "0",
        "rate_limit_per_subject": "0",
        "max_outstanding_per_subject": 0,
        **settings,
    }
    return MintLimits(make_settings(None, **values), CommandBatcher(client), clock=clock)


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("30/minute", Rate(30, 60_000)),
        ("1/second", Rate(1, 1000)),
        (" 5 / hours ", Rate(5, 3_600_000)),
        ("2/day", Rate(2, 86_400_000)),
        ("0", None),
    ],
)
def test_rate_parse(text: str, rate: Rate | None) -> None:
    assert Rate.parse(text) == rate


@pytest.mark.parametrize(
    "text", ["", "30", "30/fortnight", "-1/minute", "x/minute", "0/minute", "00/second"]
)
def test_rate_parse_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="not a rate"):
        Rate.parse(text)


async def test_subject_limit_and_retry_after(client: Any) -> None:
    clock = Clock(1_800_000.0)  # exactly at a minute boundary
    limiter = limits(client, clock, rate_limit_per_subject="3/minute")
    assert [await limiter.check("198.51.100.1", "alice") for _ in range(3)] == [None] * 3
    clock.now += 15
    assert await limiter.check("198.51.100.1", "alice") == Limited("subject", 45)
    assert await limiter.check("198.51.100.1", "bob") is None


async def test_previous_window_is_weighted_by_overlap(client: Any) -> None:
    clock = Clock(1_800_000.0 - 1)  # last second of a window
    limiter = limits(client, clock, rate_limit_per_subject="4/minute")
    assert [await limiter.check(None, "carol") for _ in range(4)] == [None] * 4
    clock.now += 31  # 30 s into the next window: the old 4 weigh 0.5 -> 2
    assert [await limiter.check(None, "carol") for _ in range(2)] == [None, None]
    assert await limiter.check(None, "carol") == Limited("subject", 30)
    clock.now += 30  # next window again: the previous (2 accepted) weighs 1.0 -> 2
    assert [await limiter.check(None, "carol") for _ in range(2)] == [None, None]
    assert (await limiter.check(None, "carol")) is not None


async def test_refused_attempts_do_not_count_against_the_subject(client: Any) -> None:
    clock = Clock(1_800_000.0)
    limiter = limits(client, clock, max_outstanding_per_subject=2)
    assert [await limiter.check(None, "dave") for _ in range(2)] == [None, None]
    for _ in range(10):
        assert await limiter.check(None, "dave") == Limited("outstanding", 31)
    clock.now += 30  # one TTL later the two issued tickets stop counting... gradually
    clock.now += 30
    assert await limiter.check(None, "dave") is None


async def test_ip_counts_every_attempt(client: Any) -> None:
    clock = Clock(1_800_000.0)
    limiter = limits(client, clock, rate_limit_per_ip="2/minute", rate_limit_per_subject="9/minute")
    assert await limiter.check("203.0.113.9", None) is None  # bad cookie: counts
    assert await limiter.check("203.0.113.9", "erin") is None
    assert await limiter.check("203.0.113.9", "erin") == Limited("ip", 60)
    assert await limiter.check("203.0.113.10", "erin") is None


async def test_keys_hold_no_raw_subject(client: Any) -> None:
    limiter = limits(client, Clock(4_000_000.0), rate_limit_per_subject="9/minute")
    await limiter.check("192.0.2.1", "secret-user@example.com")
    keys = [k.decode() for k in await client.keys("*")]
    assert keys
    assert all(k.startswith("ticketd:rl:subject:") for k in keys)
    assert not any("secret-user" in k for k in keys)
    ttl = await client.pttl(keys[0])
    assert 0 < ttl <= 120_000


async def test_no_limits_means_no_round_trip() -> None:
    class NoClient:
        def pipeline(self, transaction: bool = True) -> Any:
            raise AssertionError("no command expected")

    limiter = limits(NoClient(), Clock(0))
    assert await limiter.check("192.0.2.1", "frank") is None


async def test_ipv6_clients_count_per_64(client: Any) -> None:
    limiter = limits(client, Clock(1_800_000.0), rate_limit_per_ip="2/minute")
    assert await limiter.check("2001:db8:1:2::1", None) is None
    assert await limiter.check("2001:db8:1:2::ffff", None) is None  # same /64
    assert await limiter.check("2001:db8:1:2:aaaa::9", None) == Limited("ip", 60)
    assert await limiter.check("2001:db8:1:3::1", None) is None  # another /64
