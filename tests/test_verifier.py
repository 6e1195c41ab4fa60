"""Issuer and verifier end to end against fakeredis and a real redis-server."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

import fakeredis
import pytest
import redis

from tests.support.redisproc import RedisServer
from ticketd import (
    BlockingTicketStore,
    BlockingTicketVerifier,
    Reason,
    RedisOptions,
    StoreUnavailable,
    TicketIssuer,
    TicketRejected,
    TicketStore,
    TicketVerifier,
)
from ticketd.connection import async_client, sync_client
from ticketd.tickets import new_ticket, ticket_key

ORIGIN = "https://app.example.com"


@pytest.fixture(params=["fakeredis", "redis-server"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[TicketStore]:
    if request.param == "fakeredis":
        store = TicketStore(fakeredis.FakeAsyncRedis())
    else:
        store = TicketStore(async_client(RedisOptions(url=request.getfixturevalue("redis_url"))))
    yield store
    await store.aclose()


async def test_mint_and_redeem_returns_claims(store: TicketStore) -> None:
    now = 1_800_000_000.0
    issuer = TicketIssuer(store, ttl=30, clock=lambda: now)
    issued = await issuer.mint(
        42, origin="HTTPS://App.Example.com:443", audience="chat", extra={"room": "lobby"}
    )
    verifier = TicketVerifier(store, audience="chat", clock=lambda: now + 1)
    claims = await verifier.redeem(issued.ticket, origin=ORIGIN)
    assert claims.subject == 42
    assert claims.origin == ORIGIN
    assert claims.audience == "chat"
    assert claims.issued_at == now
    assert claims.expires_at == now + 30
    assert claims.extra == {"room": "lobby"}
    assert issued.expires_in == 30
    assert issued.ticket not in repr(issued)


async def test_second_redeem_is_invalid(store: TicketStore) -> None:
    issued = await TicketIssuer(store).mint("u", origin=ORIGIN, audience="chat")
    verifier = TicketVerifier(store)
    await verifier.redeem(issued.ticket, origin=ORIGIN)
    with pytest.raises(TicketRejected) as info:
        await verifier.redeem(issued.ticket, origin=ORIGIN)
    assert info.value.reason is Reason.INVALID


async def test_unknown_expired_and_used_are_the_same_rejection(store: TicketStore) -> None:
    issuer = TicketIssuer(store, ttl=1)
    verifier = TicketVerifier(store)
    used = await issuer.mint("u", origin=ORIGIN, audience="chat")
    await verifier.redeem(used.ticket, origin=ORIGIN)
    expired = await issuer.mint("u", origin=ORIGIN, audience="chat")
    await asyncio.sleep(1.1)
    errors = []
    for ticket in (new_ticket(), expired.ticket, used.ticket):
        with pytest.raises(TicketRejected) as info:
            await verifier.redeem(ticket, origin=ORIGIN)
        errors.append((info.value.reason, info.value.status, str(info.value)))
    assert errors == [(Reason.INVALID, 401, "invalid")] * 3


async def test_expired_by_clock_even_if_store_kept_it(store: TicketStore) -> None:
    now = 1_800_000_000.0
    issued = await TicketIssuer(store, ttl=5, clock=lambda: now).mint(
        "u", origin=ORIGIN, audience="chat"
    )
    verifier = TicketVerifier(store, clock=lambda: now + 5)
    with pytest.raises(TicketRejected) as info:
        await verifier.redeem(issued.ticket, origin=ORIGIN)
    assert info.value.reason is Reason.INVALID


@pytest.mark.parametrize(
    ("origin", "audience", "reason"),
    [
        ("https://evil.example.com", "chat", Reason.ORIGIN_MISMATCH),
        (None, "chat", Reason.ORIGIN_MISMATCH),
        ("null", "chat", Reason.ORIGIN_MISMATCH),
        (ORIGIN, "billing", Reason.AUDIENCE_MISMATCH),
    ],
)
async def test_binding_mismatch_burns_the_ticket(
    store: TicketStore, origin: str | None, audience: str, reason: Reason
) -> None:
    issued = await TicketIssuer(store).mint("u", origin=ORIGIN, audience="chat")
    verifier = TicketVerifier(store)
    with pytest.raises(TicketRejected) as info:
        await verifier.redeem(issued.ticket, origin=origin, audience=audience)
    assert info.value.reason is reason
    assert info.value.status == 403
    with pytest.raises(TicketRejected) as again:
        await verifier.redeem(issued.ticket, origin=ORIGIN, audience="chat")
    assert again.value.reason is Reason.INVALID


async def test_ip_binding(store: TicketStore) -> None:
    issuer = TicketIssuer(store)
    verifier = TicketVerifier(store)
    bound = await issuer.mint("u", origin=ORIGIN, audience="chat", client_ip="203.0.113.7")
    with pytest.raises(TicketRejected) as info:
        await verifier.redeem(bound.ticket, origin=ORIGIN, client_ip="198.51.100.1")
    assert info.value.reason is Reason.IP_MISMATCH
    bound = await issuer.mint("u", origin=ORIGIN, audience="chat", client_ip="203.0.113.7")
    claims = await verifier.redeem(bound.ticket, origin=ORIGIN, client_ip="203.0.113.7")
    assert claims.client_ip == "203.0.113.7"


async def test_malformed_ticket_makes_no_store_call() -> None:
    class CountingRedis:
        calls = 0

        async def set(self, name: str, value: bytes, *, px: int, nx: bool) -> None:
            CountingRedis.calls += 1

        async def getdel(self, name: str) -> None:
            CountingRedis.calls += 1

        async def delete(self, *names: str) -> None:
            CountingRedis.calls += 1

        async def execute_command(self, *args: object) -> None:
            CountingRedis.calls += 1

        async def ping(self) -> None:
            CountingRedis.calls += 1

    verifier = TicketVerifier(TicketStore(CountingRedis()))
    for bad in ["", "short", "x" * 44, "*" * 43, "a" * 10_000, "ticketd:*"]:
        with pytest.raises(TicketRejected) as info:
            await verifier.redeem(bad, origin=ORIGIN)
        assert info.value.reason is Reason.MALFORMED
    assert CountingRedis.calls == 0


async def test_redis_holds_only_hashes(redis_url: str, redis_sync: redis.Redis) -> None:
    store = TicketStore(async_client(RedisOptions(url=redis_url)))
    issued = await TicketIssuer(store, key_prefix="prod:td:").mint(
        "u", origin=ORIGIN, audience="chat"
    )
    keys = redis_sync.keys("*")
    assert keys == [ticket_key("prod:td:", issued.ticket).encode()]
    key, value = keys[0], redis_sync.get(keys[0])
    assert isinstance(key, bytes)
    assert isinstance(value, bytes)
    assert issued.ticket.encode() not in key + value
    await store.aclose()


async def test_mint_refuses_bad_arguments_before_storing(
    redis_url: str, redis_sync: redis.Redis
) -> None:
    store = TicketStore(async_client(RedisOptions(url=redis_url)))
    issuer = TicketIssuer(store)
    bad_calls: list[dict[str, Any]] = [
        {"subject": True, "origin": ORIGIN, "audience": "chat"},
        {"subject": "", "origin": ORIGIN, "audience": "chat"},
        {"subject": "u", "origin": "null", "audience": "chat"},
        {"subject": "u", "origin": ORIGIN, "audience": ""},
        {"subject": "u", "origin": ORIGIN, "audience": "chat", "ttl": 0.5},
        {"subject": "u", "origin": ORIGIN, "audience": "chat", "ttl": 301},
        {"subject": "u", "origin": ORIGIN, "audience": "chat", "extra": {"x": "y" * 2000}},
        {"subject": "u", "origin": ORIGIN, "audience": "chat", "extra": {"x": float("nan")}},
    ]
    for call in bad_calls:
        subject = call.pop("subject")
        with pytest.raises((TypeError, ValueError)):
            await issuer.mint(subject, **call)
    assert redis_sync.dbsize() == 0
    await store.aclose()


def test_issuer_rejects_ttl_out_of_range() -> None:
    with pytest.raises(ValueError, match="ttl"):
        TicketIssuer(TicketStore(fakeredis.FakeAsyncRedis()), ttl=1000)


async def test_from_url_connects(redis_url: str) -> None:
    verifier = TicketVerifier.from_url(redis_url, audience="chat", key_prefix="x:")
    await verifier.ping()
    issued = await TicketIssuer(verifier.store, key_prefix="x:").mint(
        "u", origin=ORIGIN, audience="chat"
    )
    assert (await verifier.redeem(issued.ticket, origin=ORIGIN)).subject == "u"
    await verifier.aclose()


async def test_blocking_verifier(redis_url: str) -> None:
    minting_store = TicketStore(async_client(RedisOptions(url=redis_url)))
    issued = await TicketIssuer(minting_store).mint(7, origin=ORIGIN, audience="chat")
    await minting_store.aclose()
    verifier = BlockingTicketVerifier.from_url(redis_url, audience="chat")
    verifier.ping()
    claims = await asyncio.to_thread(verifier.redeem, issued.ticket, origin=ORIGIN)
    assert claims.subject == 7
    with pytest.raises(TicketRejected) as info:
        verifier.redeem(issued.ticket, origin=ORIGIN)
    assert info.value.reason is Reason.INVALID
    with pytest.raises(TicketRejected) as info:
        verifier.redeem("garbage", origin=ORIGIN)
    assert info.value.reason is Reason.MALFORMED
    verifier.close()


def test_blocking_verifier_store_down(private_redis: RedisServer) -> None:
    verifier = BlockingTicketVerifier(
        BlockingTicketStore(sync_client(RedisOptions(url=private_redis.url)))
    )
    verifier.ping()
    private_redis.stop()
    with pytest.raises(StoreUnavailable):
        verifier.redeem(new_ticket(), origin=ORIGIN)
    with pytest.raises(StoreUnavailable):
        verifier.ping()
    with pytest.raises(StoreUnavailable):
        verifier.store.put("k", b"v", 1000)
    verifier.close()


async def test_redis_killed_mid_test(private_redis: RedisServer) -> None:
    """Redis stops between mint and redeem: StoreUnavailable within 2 s, never claims."""
    verifier = TicketVerifier.from_url(private_redis.url, deadline=1.0)
    issued = await TicketIssuer(verifier.store).mint("u", origin=ORIGIN, audience="chat")
    private_redis.stop()
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(StoreUnavailable):
        await verifier.redeem(issued.ticket, origin=ORIGIN)
    assert loop.time() - started < 2.0  # the deadline is the contract, not a speed claim
    await verifier.aclose()


async def test_redis_frozen_hits_deadline(private_redis: RedisServer) -> None:
    """A server that accepts but never answers (SIGSTOP) is cut off by the deadline."""
    verifier = TicketVerifier.from_url(private_redis.url, deadline=1.0)
    issued = await TicketIssuer(verifier.store).mint("u", origin=ORIGIN, audience="chat")
    assert private_redis.process is not None
    os.kill(private_redis.process.pid, signal.SIGSTOP)
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(StoreUnavailable):
            await verifier.redeem(issued.ticket, origin=ORIGIN)
        assert loop.time() - started < 2.0
    finally:
        os.kill(private_redis.process.pid, signal.SIGCONT)
    await verifier.aclose()


async def test_rejections_are_logged_without_the_ticket(
    store: TicketStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ticketd")
    issued = await TicketIssuer(store).mint("u", origin=ORIGIN, audience="chat")
    verifier = TicketVerifier(store)
    with pytest.raises(TicketRejected):
        await verifier.redeem(issued.ticket, origin="https://evil.example")
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "reason=origin_mismatch" in text
    assert issued.ticket not in text
