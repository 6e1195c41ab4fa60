"""The mint's revocation check inside its one round trip (:class:`MintPlan` with a state read).

The login's ``MGET`` travels with the counters and the ``SET``; a revoked login is
refused before any limit, and the plan's undo deletes the record and gives the
subject its attempt back. On a real redis-server.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio
from redis.exceptions import ResponseError

from tests.support.service_support import APP_ORIGIN, cookie_for, make_settings
from ticketd.exceptions import StoreUnavailable
from ticketd.issuer import TicketIssuer
from ticketd.revocation import Revocation, SessionRef, state_value
from ticketd.service import create_app
from ticketd.service.mintplan import MintPlan, Revoked
from ticketd.service.ratelimit import Limited, MintLimits
from ticketd.service.revocations import session_state_read
from ticketd.store import TicketStore

pytestmark = pytest.mark.redis

PREFIX = "ticketd:"
NOW = 1_800_000.0
LOGIN = SessionRef(session="phone", auth_at=NOW - 60, expires_at=NOW + 3600)


@pytest.fixture
async def client(redis_url: str, redis_sync: redis.Redis) -> AsyncIterator[Any]:
    redis_sync.flushdb()
    client = redis.asyncio.Redis.from_url(redis_url)
    yield client
    await client.aclose()


def limits(client: Any, **settings: Any) -> MintLimits:
    values = {"rate_limit_per_ip": "0", "rate_limit_per_subject": "0", **settings}
    values.setdefault("max_outstanding_per_subject", 0)
    return MintLimits(make_settings(None, **values), client, clock=lambda: NOW)


def plan_for(limiter: MintLimits, client: Any, subject: str, login: SessionRef) -> MintPlan:
    issuer = TicketIssuer(TicketStore(client), clock=lambda: NOW)
    ticket = issuer.prepare(subject, origin=APP_ORIGIN, audience="default", session=login)
    read = session_state_read(PREFIX, subject, login)
    return MintPlan(limiter.counters("192.0.2.1", subject), ticket, read)


async def revoke(client: Any, subject: str, *, at: float = NOW, **what: Any) -> None:
    revocation = Revocation.of(subject, at_ms=round(at * 1000), **what)
    await client.set(revocation.state_key(PREFIX), state_value(revocation))


async def mint(limiter: MintLimits, plan: MintPlan) -> Limited | Revoked | None:
    """What the service does: one round trip, then the undo if the plan refused."""
    try:
        return plan.read(await limiter.run(plan.commands))
    finally:
        if plan.undo():
            await limiter.run(plan.undo())


@pytest.mark.parametrize("paired", [False, True], ids=["cluster", "one-node"])
async def test_the_state_read_comes_first_in_the_one_round_trip(client: Any, paired: bool) -> None:
    limiter = limits(client, rate_limit_per_ip="9/minute", rate_limit_per_subject="9/minute")
    limiter.paired = paired  # on Cluster a call per counter key; else one for both
    plan = plan_for(limiter, client, "alice", LOGIN)
    counters = ["EVALSHA"] if paired else ["EVALSHA", "EVALSHA"]
    assert [c[0] for c in plan.commands] == ["MGET", *counters, "SET"]
    assert plan.read(await limiter.run(plan.commands)) is None
    assert plan.undo() == []
    assert plan.ticket is not None
    assert await client.get(plan.ticket.key) == plan.ticket.record


async def test_a_revoked_session_stores_nothing_and_gives_the_attempt_back(client: Any) -> None:
    limiter = limits(client, rate_limit_per_subject="1/minute")
    await revoke(client, "alice", session="phone")
    revoked = plan_for(limiter, client, "alice", LOGIN)
    assert await mint(limiter, revoked) == Revoked()
    assert revoked.ticket is not None
    assert await client.exists(revoked.ticket.key) == 0
    # The subject's one attempt a minute was taken back: another login still mints once...
    laptop = SessionRef(session="laptop", auth_at=NOW - 60, expires_at=NOW + 3600)
    assert await mint(limiter, plan_for(limiter, client, "alice", laptop)) is None
    # ...and only once (control: the limit is live).
    assert await mint(limiter, plan_for(limiter, client, "alice", laptop)) == Limited("subject", 60)


async def test_a_revoked_login_wins_over_a_limit_refusal(client: Any) -> None:
    limiter = limits(client, rate_limit_per_subject="1/minute")
    assert await mint(limiter, plan_for(limiter, client, "bob", LOGIN)) is None
    assert await mint(limiter, plan_for(limiter, client, "bob", LOGIN)) == Limited("subject", 60)
    await revoke(client, "bob")  # every login of bob's before now
    assert await mint(limiter, plan_for(limiter, client, "bob", LOGIN)) == Revoked()


async def test_a_later_login_is_not_revoked_by_an_earlier_subject_revocation(client: Any) -> None:
    limiter = limits(client)
    await revoke(client, "carol")
    later = SessionRef(session="new", auth_at=NOW + 1, expires_at=NOW + 3600)
    assert await mint(limiter, plan_for(limiter, client, "carol", later)) is None
    assert await mint(limiter, plan_for(limiter, client, "carol", LOGIN)) == Revoked()


async def test_an_unreadable_marker_counts_as_revoked(client: Any) -> None:
    limiter = limits(client)
    plan = plan_for(limiter, client, "dave", LOGIN)
    assert plan.revocation is not None
    subject_key = plan.revocation.command[1]
    await client.set(subject_key, b"not json")
    assert await mint(limiter, plan) == Revoked()
    await client.delete(subject_key)
    assert await mint(limiter, plan_for(limiter, client, "dave", LOGIN)) is None  # control


async def test_an_error_reply_to_the_state_read_fails_closed_and_undoes(client: Any) -> None:
    limiter = limits(client, rate_limit_per_subject="9/minute")
    plan = plan_for(limiter, client, "erin", LOGIN)
    with pytest.raises(StoreUnavailable):
        plan.read([ResponseError("WRONGTYPE"), [0, 0], True])
    assert plan.ticket is not None
    assert [c[0] for c in plan.undo()] == ["EVALSHA", "DEL"]
    assert plan.undo()[-1] == ("DEL", plan.ticket.key)


class CountingClient:
    """A redis-py asyncio client that counts direct commands and pipelines."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.direct: list[str] = []
        self.pipelines = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        self.direct.append(str(args[0]))
        return await self.client.execute_command(*args, **options)

    def pipeline(self, *args: Any, **kwargs: Any) -> Any:
        self.pipelines += 1
        return self.client.pipeline(*args, **kwargs)


@pytest.mark.parametrize("revoked", [False, True])
async def test_a_mint_is_one_round_trip_with_its_revocation_check(
    redis_url: str, client: Any, revoked: bool
) -> None:
    counting = CountingClient(redis.asyncio.Redis.from_url(redis_url))
    app = create_app(make_settings(redis_url), redis_client=counting)
    cookie = cookie_for("frank")
    if revoked:  # every login of frank's signed before a second from now
        await revoke(client, "frank", at=time.time() + 1)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ticketd") as http:
        response = await http.post(
            "/v1/tickets", headers={"Origin": APP_ORIGIN, "Cookie": f"session={cookie}"}
        )
    await counting.client.aclose()
    assert response.status_code == (401 if revoked else 201)
    if revoked:
        assert response.json()["code"] == "session_revoked"
    assert counting.direct == []
    # One pipeline for the mint; a refused one sends its undo in a second.
    assert counting.pipelines == (2 if revoked else 1)
