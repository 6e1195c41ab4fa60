"""The mint plan and its limits on a real redis-server: the cap at window edges, NOSCRIPT."""

from __future__ import annotations

import math
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio

from tests.support.redisproc import RedisServer, free_port
from tests.support.service_support import APP_ORIGIN, cookie_for, make_settings, running_service
from ticketd.exceptions import StoreUnavailable
from ticketd.issuer import TicketIssuer
from ticketd.service.mintplan import MintPlan
from ticketd.service.ratelimit import CLOCK_SKEW_MS, LIMIT_SCRIPT, Limited, MintLimits
from ticketd.store import TicketStore

pytestmark = pytest.mark.redis

BOUNDARY = 1_800_000.0
"""A multiple of every window below (30 s TTL, 1 minute): the edge old counters leaked at."""


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Any]:
    client = redis.asyncio.Redis.from_url(redis_url)
    yield client
    await client.aclose()


def limits(client: Any, clock: Clock, **settings: Any) -> MintLimits:
    values = {
        "rate_limit_per_ip": "0",
        "rate_limit_per_subject": "0",
        "max_outstanding_per_subject": 0,
        **settings,
    }
    return MintLimits(make_settings(None, **values), client, clock=clock)


async def test_outstanding_cap_holds_at_every_instant_across_a_window_boundary(
    client: Any,
) -> None:
    """Tickets minted just before a window edge still count just after it.

    A fixed-window counter weighted by overlap (the previous design) let one subject
    hold nearly twice the cap there: three tickets at the end of one window weigh
    almost nothing late in the next one, while all three are still live.
    """
    cap, ttl, skew = 3, 30.0, CLOCK_SKEW_MS / 1000
    start = BOUNDARY - cap / 10  # the first `cap` attempts all land before the edge
    clock = Clock(start)
    limiter = limits(client, clock, max_outstanding_per_subject=cap)
    issued: list[float] = []
    refused = 0
    # Every 100 ms for 70 s: one attempt; the live tickets never exceed the cap.
    for step in range(700):
        clock.now = start + step / 10
        verdict = await limiter.check(None, "mallory")
        if verdict is None:
            issued.append(clock.now)
        else:
            assert verdict.limit == "outstanding"
            assert 1 <= verdict.retry_after <= ttl + skew + 1
            refused += 1
        live = [t for t in issued if t + ttl > clock.now]
        assert len(live) <= cap, f"{len(live)} live tickets at {clock.now - BOUNDARY:+.1f} s"
    # Not vacuous: the cap was hit, and freed again as tickets expired.
    assert refused > 600
    assert issued[:cap] == [pytest.approx(start + i / 10) for i in range(cap)]
    assert all(t < BOUNDARY for t in issued[:cap])
    assert len(issued) > cap
    # Counted for the clock skew past its TTL, then to the end of that second: within
    # two seconds of the first ticket's expiry, the subject may mint again.
    assert ttl + skew <= issued[cap] - issued[0] <= ttl + skew + 1


async def test_rates_keep_their_sliding_window_at_the_boundary(client: Any) -> None:
    """The per-subject rate is still the sliding-window counter (documented semantics)."""
    clock = Clock(BOUNDARY - 1)
    limiter = limits(client, clock, rate_limit_per_subject="4/minute")
    assert [await limiter.check(None, "carol") for _ in range(4)] == [None] * 4
    assert await limiter.check(None, "carol") == Limited("subject", 1)
    clock.now += 31  # 30 s into the next window: the old 4 weigh 0.5 -> 2
    assert [await limiter.check(None, "carol") for _ in range(2)] == [None, None]
    assert await limiter.check(None, "carol") == Limited("subject", 30)


async def test_ip_refusal_takes_the_attempt_back_from_the_subject(client: Any) -> None:
    clock = Clock(BOUNDARY)
    limiter = limits(client, clock, rate_limit_per_ip="1/minute", max_outstanding_per_subject=1)
    assert await limiter.check("192.0.2.1", "alice") is None
    clock.now += 60  # new minute: the IP has budget, alice's ticket has expired
    assert await limiter.check("192.0.2.2", "alice") is None
    # Refused by the IP, after the subject counter counted it: taken back.
    assert await limiter.check("192.0.2.2", "bob") == Limited("ip", 60)
    assert await limiter.check("192.0.2.3", "bob") is None


@pytest.mark.parametrize("paired", [False, True], ids=["cluster", "one-node"])
async def test_one_command_per_counter_key_and_one_for_the_ticket(
    client: Any, paired: bool
) -> None:
    limiter = limits(
        client,
        Clock(BOUNDARY),
        rate_limit_per_ip="9/minute",
        rate_limit_per_subject="9/minute",
        max_outstanding_per_subject=9,
    )
    limiter.paired = paired  # on Cluster a call per counter key; else one for both
    issuer = TicketIssuer(TicketStore(client))
    ticket = issuer.prepare("alice", origin=APP_ORIGIN, audience="default")
    plan = MintPlan(limiter.counters("192.0.2.1", "alice"), ticket)
    counters = ["EVALSHA"] if paired else ["EVALSHA", "EVALSHA"]
    assert [c[0] for c in plan.commands] == [*counters, "SET"]
    assert plan.read(await limiter.run(plan.commands)) is None
    assert plan.undo() == []
    assert await client.get(ticket.key) == ticket.record


async def test_noscript_after_script_flush_reloads_the_script(
    client: Any, redis_sync: redis.Redis
) -> None:
    """After a failover or SCRIPT FLUSH the counters keep counting, exactly."""
    limiter = limits(client, Clock(BOUNDARY), max_outstanding_per_subject=2)
    redis_sync.script_flush()
    assert redis_sync.script_exists(LIMIT_SCRIPT.sha) == [False]
    assert await limiter.check(None, "dave") is None  # NOSCRIPT: loaded, sent again
    assert redis_sync.script_exists(LIMIT_SCRIPT.sha) == [True]
    redis_sync.script_flush()
    assert await limiter.check(None, "dave") is None
    redis_sync.script_flush()
    assert await limiter.check(None, "dave") == Limited("outstanding", 31)


async def test_noscript_never_falls_back_to_unscripted_commands(
    client: Any, redis_sync: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the script cannot be loaded, the mint fails closed: nothing counted, 503."""
    limiter = limits(client, Clock(BOUNDARY), max_outstanding_per_subject=2)
    redis_sync.script_flush()

    async def load_nothing(scripts: Any) -> None:
        return None

    monkeypatch.setattr(limiter.trip, "load", load_nothing)
    with pytest.raises(StoreUnavailable):
        await limiter.check(None, "erin")
    assert redis_sync.keys("ticketd:rl:*") == []


def test_service_mints_after_script_flush_and_deletes_refused_records(
    redis_url: str, redis_sync: redis.Redis
) -> None:
    settings = make_settings(redis_url, max_outstanding_per_subject=1)
    with running_service(settings) as base:
        headers = {"Origin": APP_ORIGIN, "Cookie": f"session={cookie_for('frank')}"}
        redis_sync.script_flush()
        first = httpx.post(f"{base}/v1/tickets", headers=headers, timeout=10)
        redis_sync.script_flush()
        second = httpx.post(f"{base}/v1/tickets", headers=headers, timeout=10)
    assert first.status_code == 201, first.text
    assert second.status_code == 429
    assert second.json()["code"] == "too_many_outstanding"
    keys: list[bytes] = redis_sync.keys("ticketd:*")  # type: ignore[assignment]
    records = [k for k in keys if not k.startswith(b"ticketd:rl:")]
    assert len(records) == 1  # the refused attempt's record was deleted again


class CapModel:
    """The cap's meaning, written plainly: every counted ticket counts until the end of
    the second its TTL ends in (by the clock of the call that looks: a bucket one
    instance saw expire is gone for all, as Redis' own TTLs are); an attempt is refused
    while ``cap`` tickets count. A refused attempt writes nothing."""

    def __init__(self, cap: int, ttl_ms: int) -> None:
        self.cap, self.ttl_ms = cap, ttl_ms
        self.expiries: list[int] = []

    def live(self, now_ms: int) -> list[int]:
        return [e for e in self.expiries if e * 1000 > now_ms]

    def attempt(self, now_ms: int) -> list[int]:
        live = self.live(now_ms)
        if len(live) >= self.cap:
            return [2, min(live) * 1000 - now_ms]
        self.expiries = [*live, -(-(now_ms + self.ttl_ms) // 1000)]
        return [0, 0]

    def take_back(self, now_ms: int) -> None:
        self.expiries = self.live(now_ms)
        expiry = -(-(now_ms + self.ttl_ms) // 1000)
        if expiry in self.expiries:
            self.expiries.remove(expiry)


@pytest.mark.parametrize("seed", range(6))
def test_the_cap_script_agrees_with_the_plain_rule(redis_sync: redis.Redis, seed: int) -> None:
    """Random attempts and take-backs, with clocks of several instances that disagree by
    up to 1.5 s (so buckets arrive out of order), against :class:`CapModel`: the same
    verdict, the same retry-after, the same live count in the stored state, every step."""
    rng = random.Random(seed)
    cap, ttl_ms = rng.choice([(3, 2000), (8, 5000), (40, 30_000)])
    model = CapModel(cap, ttl_ms)
    config = f"0:0:{cap}:{ttl_ms}:0:{ttl_ms + 2000}"
    sha = redis_sync.script_load(LIMIT_SCRIPT.source)
    assert sha == LIMIT_SCRIPT.sha
    base = 1_800_000_000
    for step in range(600):
        base += rng.choice([0, 1, 7, 50, 250, 900])
        now = base - rng.choice([0, 0, 0, 300, 1500])  # another instance's clock
        if rng.random() < 0.2:
            redis_sync.evalsha(sha, 1, "cap", now, config, "-1")
            model.take_back(now)
            continue
        verdict = redis_sync.evalsha(sha, 1, "cap", now, config)
        assert verdict == model.attempt(now), f"step {step}"
        raw = redis_sync.get("cap")
        state = raw.decode() if isinstance(raw, bytes) else ""
        buckets = [tuple(map(int, b.split(":"))) for b in state.split(";")[1:]]
        assert [e for e, _ in buckets] == sorted({e for e, _ in buckets}), state
        assert int(state.split(";")[0].split(":")[3]) == sum(n for _, n in buckets)
        assert sum(n for e, n in buckets if e * 1000 > now) == len(model.live(now)), state
        assert sorted(e for e, n in buckets for _ in range(n)) == sorted(model.expiries)


def test_the_cap_script_reads_the_previous_state_form(redis_sync: redis.Redis) -> None:
    """State written by the previous script (no live total, buckets in any order) is read,
    counted and written back in the current form: an upgrade keeps every count."""
    sha = redis_sync.script_load(LIMIT_SCRIPT.source)
    now = 1_800_000_000
    live = [now // 1000 + 20, now // 1000 + 5, now // 1000 + 12]
    expired = now // 1000 - 1
    redis_sync.set("cap", f"60:0:0;{live[0]}:2;{expired}:4;{live[1]}:1;{live[2]}:3")
    config = "0:0:7:30000:0:32000"
    assert redis_sync.evalsha(sha, 1, "cap", now, config) == [0, 0]  # 6 live: the 7th
    assert redis_sync.evalsha(sha, 1, "cap", now, config) == [2, live[1] * 1000 - now]
    state = redis_sync.get("cap")
    assert state == (f"60:0:0:7;{live[1]}:1;{live[2]}:3;{live[0]}:2;{now // 1000 + 30}:1".encode())


async def test_one_call_for_both_counters_decides_as_two_calls_do(client: Any) -> None:
    """The paired call (standalone, Sentinel) and the call per key (Cluster) give the same
    verdict for every attempt of random mixes of clients, subjects and times, with every
    limit tight enough to refuse; each limiter on its own key prefix."""
    tight = {
        "rate_limit_per_ip": "12/minute",
        "rate_limit_per_subject": "5/minute",
        "max_outstanding_per_subject": 2,
        "ticket_ttl": 30,
    }
    verdicts: set[str] = set()
    for seed in range(4):
        rng = random.Random(seed)
        clock = Clock(BOUNDARY)
        paired = limits(client, clock, key_prefix=f"paired{seed}:", **tight)
        separate = limits(client, clock, key_prefix=f"separate{seed}:", **tight)
        separate.paired = False
        assert paired.paired
        for step in range(300):
            clock.now += rng.choice([0, 0.2, 1, 3, 9])
            ip = rng.choice(["192.0.2.1", "192.0.2.2"])
            subject = rng.choice(["ann", "bo", "cy"])
            got = await paired.check(ip, subject)
            assert got == await separate.check(ip, subject), f"seed {seed} step {step}"
            verdicts.add(got.limit if got else "ok")
    assert verdicts == {"ok", "ip", "subject", "outstanding"}  # every path was taken


@pytest.fixture
def one_node_cluster(tmp_path: Any) -> Any:
    """A Redis Cluster of one node that holds every slot: single-key calls work on a
    plain connection, multi-key calls across slots are refused ``CROSSSLOT`` (what a
    sharded server behind one endpoint, a cluster proxy, answers)."""
    server = RedisServer(
        "--cluster-enabled", "yes",
        "--cluster-config-file", str(tmp_path / "nodes.conf"),
        # The default bus port is port + 10000, past 65535 for high free ports.
        "--cluster-port", str(free_port()),
    ).start()  # fmt: skip
    try:
        with server.client() as admin:
            admin.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
            for _ in range(100):
                if admin.execute_command("CLUSTER", "INFO").find(b"cluster_state:ok") >= 0:
                    break
                time.sleep(0.05)
        yield server
    finally:
        server.close()


async def test_a_paired_call_refused_crossslot_is_sent_one_key_at_a_time(
    one_node_cluster: Any,
) -> None:
    client = redis.asyncio.Redis.from_url(one_node_cluster.url)
    try:
        clock = Clock(BOUNDARY)
        limiter = limits(client, clock, rate_limit_per_ip="2/minute", max_outstanding_per_subject=1)
        paired = [limiter.paired]
        assert await limiter.check("192.0.2.1", "alice") is None  # CROSSSLOT, then split
        paired.append(limiter.paired)
        assert paired == [True, False]  # one call per key from now on
        assert await limiter.check("192.0.2.1", "alice") == Limited("outstanding", 31)
        assert await limiter.check("192.0.2.1", "bob") == Limited("ip", 60)
        # The IP refused bob: his subject counter was never counted.
        clock.now += 60
        assert await limiter.check("192.0.2.2", "bob") is None
    finally:
        await client.aclose()


@pytest.mark.parametrize("skew", [0.15, 0.9])
async def test_the_cap_holds_when_another_instance_clock_runs_ahead(
    any_async_redis: Any, skew: float
) -> None:
    """Buckets are placed and dropped by the calling instance's clock, while a ticket
    lives its TTL on Redis' clock. B mints on a second boundary (no rounding slack);
    0.1 s before that ticket's end, A — whose clock is ``skew`` ahead — must still
    count it: a ticket counts CLOCK_SKEW_MS past its TTL. (Without that, A dropped
    B's bucket and admitted a second live ticket under a cap of 1.)"""
    t = float(BOUNDARY)
    b_clock, a_clock = Clock(t), Clock(t + skew)
    b = limits(any_async_redis, b_clock, max_outstanding_per_subject=1)
    a = limits(any_async_redis, a_clock, max_outstanding_per_subject=1)
    assert await b.check(None, "zoe") is None  # lives until t + 30 s on Redis' clock
    b_clock.now, a_clock.now = t + 29.9, t + 29.9 + skew
    assert await b.check(None, "zoe") == Limited("outstanding", 2)
    assert await a.check(None, "zoe") == Limited("outstanding", math.ceil(31 - 29.9 - skew))
    # And it is counted no longer than needed: past the skew, A mints again.
    a_clock.now = t + 31
    assert await a.check(None, "zoe") is None
