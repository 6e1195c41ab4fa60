"""Issuer and verifier end to end: every scenario for both twins (``verifier_kind``),
on fakeredis and on a real redis-server (``stores``)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tests.support.redis_topologies import redis_replicated
from tests.support.redisproc import RedisServer
from tests.support.twins import AnyVerifier, Kind, Stores, wait_mode_verifier
from ticketd import (
    BlockingTicketStore,
    BlockingTicketVerifier,
    Reason,
    StoreUnavailable,
    TicketIssuer,
    TicketRejected,
    TicketStore,
    TicketVerifier,
)
from ticketd.exceptions import Detail, InvalidSubject, StoreOperation
from ticketd.issuer import MAX_SAFE_INTEGER
from ticketd.redemption import DEFAULT_LEEWAY
from ticketd.tickets import new_ticket, ticket_key

ORIGIN = "https://app.example.com"
NOW = 1_800_000_000.0


async def rejection(verifier: AnyVerifier, ticket: str, **kwargs: Any) -> TicketRejected:
    kwargs.setdefault("origin", ORIGIN)
    with pytest.raises(TicketRejected) as info:
        await verifier.redeem(ticket, **kwargs)
    return info.value


# -- the scenario table: each runs for both twins, on fakeredis and redis-server ---------


async def test_mint_and_redeem_returns_claims(stores: Stores, verifier_kind: Kind) -> None:
    issuer = stores.issuer(ttl=30, clock=lambda: NOW)
    issued = await issuer.mint(
        42, origin="HTTPS://App.Example.com:443", audience="chat", extra={"room": "lobby"}
    )
    verifier = stores.verifier(audience="chat", clock=lambda: NOW + 1)
    claims = await verifier.redeem(issued.ticket, origin=ORIGIN)
    assert claims.subject == 42
    assert claims.origin == ORIGIN
    assert claims.audience == "chat"
    assert claims.issued_at == NOW
    assert claims.expires_at == NOW + 30
    assert claims.extra == {"room": "lobby"}
    assert issued.expires_in == 30
    assert issued.ticket not in repr(issued)


async def test_second_redeem_is_invalid(stores: Stores, verifier_kind: Kind) -> None:
    issued = await stores.issuer().mint("u", origin=ORIGIN, audience="chat")
    verifier = stores.verifier()
    await verifier.redeem(issued.ticket, origin=ORIGIN)
    assert (await rejection(verifier, issued.ticket)).reason is Reason.INVALID


async def test_unknown_expired_and_used_are_the_same_rejection(
    stores: Stores, verifier_kind: Kind
) -> None:
    issuer = stores.issuer(ttl=1)
    verifier = stores.verifier()
    used = await issuer.mint("u", origin=ORIGIN, audience="chat")
    await verifier.redeem(used.ticket, origin=ORIGIN)
    expired = await issuer.mint("u", origin=ORIGIN, audience="chat")
    await asyncio.sleep(1.1)
    errors = []
    for ticket in (new_ticket(), expired.ticket, used.ticket):
        error = await rejection(verifier, ticket)
        errors.append((error.reason, error.status, str(error), error.detail))
    assert errors == [(Reason.INVALID, 401, "invalid", None)] * 3


async def test_expired_by_clock_beyond_the_leeway_even_if_store_kept_it(
    stores: Stores, verifier_kind: Kind
) -> None:
    """The store still has the record (TTL 5 s from now), the verifier's clock is past it."""
    issued = await stores.issuer(ttl=5, clock=lambda: NOW).mint("u", origin=ORIGIN, audience="chat")
    verifier = stores.verifier(clock=lambda: NOW + 5 + DEFAULT_LEEWAY)
    error = await rejection(verifier, issued.ticket)
    assert (error.reason, error.detail) == (Reason.INVALID, Detail.EXPIRED_BY_CLOCK)


async def test_expiry_within_the_leeway_is_accepted(stores: Stores, verifier_kind: Kind) -> None:
    """Control for the test above: a clock 4 s past the record's expiry, leeway 5 s."""
    issued = await stores.issuer(ttl=5, clock=lambda: NOW).mint("u", origin=ORIGIN, audience="chat")
    verifier = stores.verifier(clock=lambda: NOW + 9, leeway=5)
    assert (await verifier.redeem(issued.ticket, origin=ORIGIN)).subject == "u"


@pytest.mark.parametrize(("ahead", "refused"), [(5.0, False), (5.5, True), (120.0, True)])
async def test_issuer_clock_ahead_beyond_the_leeway_is_told_apart(
    stores: Stores, verifier_kind: Kind, ahead: float, refused: bool
) -> None:
    """A record issued in the verifier's future: ``invalid`` to the client, but the
    detail says the clocks disagree (before, it read as an unknown ticket)."""
    issued = await stores.issuer(clock=lambda: NOW + ahead).mint(
        "u", origin=ORIGIN, audience="chat"
    )
    verifier = stores.verifier(clock=lambda: NOW, leeway=5)
    if refused:
        error = await rejection(verifier, issued.ticket)
        assert (error.reason, error.status, error.detail) == (
            Reason.INVALID,
            401,
            Detail.ISSUED_IN_FUTURE,
        )
    else:
        assert (await verifier.redeem(issued.ticket, origin=ORIGIN)).subject == "u"


@pytest.mark.parametrize(
    ("origin", "audience", "reason"),
    [
        ("https://evil.example.com", "chat", Reason.ORIGIN_MISMATCH),
        (None, "chat", Reason.ORIGIN_MISMATCH),
        ("null", "chat", Reason.ORIGIN_MISMATCH),
        ("not an origin", "chat", Reason.ORIGIN_MISMATCH),
        (ORIGIN, "billing", Reason.AUDIENCE_MISMATCH),
    ],
)
async def test_binding_mismatch_burns_the_ticket(
    stores: Stores, verifier_kind: Kind, origin: str | None, audience: str, reason: Reason
) -> None:
    issued = await stores.issuer().mint("u", origin=ORIGIN, audience="chat")
    verifier = stores.verifier()
    error = await rejection(verifier, issued.ticket, origin=origin, audience=audience)
    assert (error.reason, error.status) == (reason, 403)
    again = await rejection(verifier, issued.ticket, origin=ORIGIN, audience="chat")
    assert again.reason is Reason.INVALID


async def test_verifier_audience_is_the_default(stores: Stores, verifier_kind: Kind) -> None:
    issued = await stores.issuer().mint("u", origin=ORIGIN, audience="chat")
    error = await rejection(stores.verifier(audience="billing"), issued.ticket)
    assert error.reason is Reason.AUDIENCE_MISMATCH


async def test_ip_binding(stores: Stores, verifier_kind: Kind) -> None:
    issuer = stores.issuer()
    verifier = stores.verifier()
    bound = await issuer.mint("u", origin=ORIGIN, audience="chat", client_ip="203.0.113.7")
    error = await rejection(verifier, bound.ticket, client_ip="198.51.100.1")
    assert error.reason is Reason.IP_MISMATCH
    bound = await issuer.mint("u", origin=ORIGIN, audience="chat", client_ip="203.0.113.7")
    claims = await verifier.redeem(bound.ticket, origin=ORIGIN, client_ip="203.0.113.7:5000")
    assert claims.client_ip == "203.0.113.7"


async def test_unreadable_record_is_invalid_with_a_detail(
    stores: Stores, verifier_kind: Kind
) -> None:
    ticket = new_ticket()
    await stores.store.put(ticket_key("ticketd:", ticket), b"[2, 'from the future']", 10_000)
    error = await rejection(stores.verifier(), ticket)
    assert (error.reason, error.detail) == (Reason.INVALID, Detail.UNREADABLE_RECORD)


async def test_key_prefix_separates_services(stores: Stores, verifier_kind: Kind) -> None:
    issued = await stores.issuer(key_prefix="a:").mint("u", origin=ORIGIN, audience="chat")
    assert (await rejection(stores.verifier(key_prefix="b:"), issued.ticket)).reason is (
        Reason.INVALID
    )
    claims = await stores.verifier(key_prefix="a:").redeem(issued.ticket, origin=ORIGIN)
    assert claims.subject == "u"


@pytest.mark.parametrize("bad", ["", "short", "x" * 44, "*" * 43, "a" * 10_000, "ticketd:*"])
async def test_malformed_ticket_makes_no_store_call(verifier_kind: Kind, bad: str) -> None:
    calls: list[str] = []

    class CountingRedis:
        def getdel(self, name: str) -> None:
            calls.append("getdel")

        def pipeline(self, transaction: bool = True) -> None:
            calls.append("pipeline")

        def set(self, name: str, value: bytes, *, px: int, nx: bool) -> None:
            calls.append("set")

        def execute_command(self, *args: object, **options: object) -> None:
            calls.append(str(args[0]))

        def ping(self) -> None:
            calls.append("ping")

    verifier: TicketVerifier | BlockingTicketVerifier
    if verifier_kind == "async":
        verifier = TicketVerifier(TicketStore(CountingRedis(), batch=False))  # type: ignore[arg-type]
    else:
        verifier = BlockingTicketVerifier(BlockingTicketStore(CountingRedis()))
    error = await rejection(AnyVerifier(verifier), bad)
    assert (error.reason, error.ticket_hash) == (Reason.MALFORMED, None)
    assert calls == []


async def test_from_url_connects(redis_url: str, verifier_kind: Kind) -> None:
    verifier_class = TicketVerifier if verifier_kind == "async" else BlockingTicketVerifier
    verifier = AnyVerifier(
        verifier_class.from_url(
            redis_url, audience="chat", key_prefix="x:", deadline=2.0, socket_timeout=0.4
        )
    )
    await verifier.ping()
    issuer = TicketIssuer.from_url(redis_url, key_prefix="x:")
    issued = await issuer.mint("u", origin=ORIGIN, audience="chat")
    assert (await verifier.redeem(issued.ticket, origin=ORIGIN)).subject == "u"
    assert verifier.inner.store.deadline == 2.0
    await verifier.close()
    await issuer.store.aclose()


def test_from_url_fits_the_timeouts_into_the_deadline() -> None:
    store = BlockingTicketStore.from_url("redis://127.0.0.1:1/0", deadline=0.4)
    kwargs = store.client.connection_pool.connection_kwargs  # type: ignore[attr-defined]
    assert (kwargs["socket_connect_timeout"], kwargs["socket_timeout"]) == (0.2, 0.2)
    store.close()


@pytest.mark.parametrize("store_class", [TicketStore, BlockingTicketStore])
def test_a_url_is_not_a_client(store_class: type[TicketStore | BlockingTicketStore]) -> None:
    with pytest.raises(TypeError, match=rf"{store_class.__name__}\.from_url"):
        store_class("redis://127.0.0.1:6379/0")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"TicketVerifier\.from_url"):
        TicketVerifier("redis://127.0.0.1:6379/0")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"TicketIssuer\.from_url"):
        TicketIssuer("redis://127.0.0.1:6379/0")  # type: ignore[arg-type]


def test_blocking_store_refuses_a_client_that_could_block_past_the_deadline() -> None:
    """Without it, a frozen Redis holds the thread for redis-py's 5 s default, or forever."""
    for kwargs in ({}, {"socket_timeout": None}, {"socket_timeout": 3.0}):
        client = redis.Redis(port=1, socket_connect_timeout=0.5, **kwargs)
        with pytest.raises(ValueError, match="socket_timeout"):
            BlockingTicketStore(client, deadline=1.0)
        client.close()
    fitting = redis.Redis(port=1, socket_connect_timeout=0.5, socket_timeout=0.5)
    BlockingTicketStore(fitting, deadline=1.0).close()


async def test_store_down(private_redis: RedisServer, verifier_kind: Kind) -> None:
    verifier_class = TicketVerifier if verifier_kind == "async" else BlockingTicketVerifier
    verifier = AnyVerifier(verifier_class.from_url(private_redis.url))
    await verifier.ping()
    private_redis.stop()
    with pytest.raises(StoreUnavailable) as info:
        await verifier.redeem(new_ticket(), origin=ORIGIN)
    assert info.value.operation is StoreOperation.REDEEM
    assert info.value.__cause__ is info.value.cause is not None
    assert f"127.0.0.1:{private_redis.port}" in str(info.value)
    with pytest.raises(StoreUnavailable) as info:
        await verifier.ping()
    assert info.value.operation is StoreOperation.PING
    await verifier.close()


@pytest.fixture
def frozen() -> Iterator[RedisServer]:
    """A private redis-server, SIGSTOPped by the test and always let go after it."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        if server.process is not None:
            os.kill(server.process.pid, signal.SIGCONT)
        server.close()


async def test_frozen_redis_hits_the_deadline(frozen: RedisServer, verifier_kind: Kind) -> None:
    """A server that accepts but never answers (SIGSTOP): StoreUnavailable within the
    deadline for both twins, never a hang (the blocking one used to wait 5 s or more)."""
    verifier_class = TicketVerifier if verifier_kind == "async" else BlockingTicketVerifier
    verifier = AnyVerifier(verifier_class.from_url(frozen.url, deadline=1.0))
    issuer = TicketIssuer.from_url(frozen.url)
    issued = await issuer.mint("u", origin=ORIGIN, audience="chat")
    assert frozen.process is not None
    os.kill(frozen.process.pid, signal.SIGSTOP)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as info:
        await verifier.redeem(issued.ticket, origin=ORIGIN)
    elapsed = time.monotonic() - started
    assert info.value.operation is StoreOperation.REDEEM
    assert elapsed < 2.0  # the deadline (1 s) is the contract, not a speed claim
    os.kill(frozen.process.pid, signal.SIGCONT)
    await verifier.close()
    await issuer.store.aclose()


@pytest.mark.redis
@pytest.mark.slow
async def test_wait_replicas(verifier_kind: Kind) -> None:
    """Both twins take ``wait_replicas`` from from_url: acknowledged with the replica up,
    fail closed (503, never ``invalid``) once it is gone."""
    with redis_replicated() as (master, replica):
        verifier = wait_mode_verifier(verifier_kind, master.url)
        issuer = TicketIssuer.from_url(master.url)
        try:
            issued = await issuer.mint("u", origin=ORIGIN, audience="chat")
            assert (await verifier.redeem(issued.ticket, origin=ORIGIN)).subject == "u"
            replica.stop()
            issued = await issuer.mint("u", origin=ORIGIN, audience="chat")
            with pytest.raises(StoreUnavailable, match="acknowledged"):
                await verifier.redeem(issued.ticket, origin=ORIGIN)
        finally:
            await verifier.close()
            await issuer.store.aclose()


# -- minting -------------------------------------------------------------------------------


async def test_redis_holds_only_hashes(redis_url: str, redis_sync: redis.Redis) -> None:
    issuer = TicketIssuer.from_url(redis_url, key_prefix="prod:td:")
    issued = await issuer.mint("u", origin=ORIGIN, audience="chat")
    keys = redis_sync.keys("*")
    assert keys == [ticket_key("prod:td:", issued.ticket).encode()]
    key, value = keys[0], redis_sync.get(keys[0])
    assert isinstance(key, bytes)
    assert isinstance(value, bytes)
    assert issued.ticket.encode() not in key + value
    await issuer.store.aclose()


async def test_mint_refuses_bad_arguments_before_storing(
    redis_url: str, redis_sync: redis.Redis
) -> None:
    issuer = TicketIssuer.from_url(redis_url)
    bad_calls: list[dict[str, Any]] = [
        {"subject": "u", "origin": "null", "audience": "chat"},
        {"subject": "u", "origin": ORIGIN, "audience": ""},
        {"subject": "u", "origin": ORIGIN, "audience": "chat", "ttl": 0.5},
        {"subject": "u", "origin": ORIGIN, "audience": "chat", "ttl": 301},
        {"subject": "u", "origin": ORIGIN, "audience": "chat", "extra": {"x": "y" * 2000}},
        {"subject": "u", "origin": ORIGIN, "audience": "chat", "extra": {"x": float("nan")}},
    ]
    for call in bad_calls:
        subject = call.pop("subject")
        with pytest.raises(ValueError):  # noqa: PT011  (each call its own message)
            await issuer.mint(subject, **call)
    assert redis_sync.dbsize() == 0
    await issuer.store.aclose()


@pytest.mark.parametrize(
    ("subject", "code"),
    [
        (True, "not_str_or_int"),
        (1.0, "not_str_or_int"),
        (None, "not_str_or_int"),
        (MAX_SAFE_INTEGER + 1, "unsafe_integer"),
        (-MAX_SAFE_INTEGER - 1, "unsafe_integer"),
        (2**64, "unsafe_integer"),
        ("", "empty"),
        (" ", "blank"),
        ("\t\n ", "blank"),
        ("\u3000", "blank"),  # ideographic space
        ("alice\x00", "control_character"),
        ("alice\nbob", "control_character"),
        ("\x7f", "control_character"),
        ("admin\u202e", "control_character"),  # right-to-left override
        ("ali\u200bce", "control_character"),  # zero-width space
        ("a\u2028b", "control_character"),  # line separator
        ("x" * 257, "too_long"),
    ],
)
async def test_subjects_no_backend_reads_the_same_are_refused(
    stores: Stores, subject: object, code: str
) -> None:
    """A JavaScript backend reads 2**53 + 1 as 2**53: another user. Refused at the mint,
    before any store call, with a code."""
    with pytest.raises(InvalidSubject) as info:
        await stores.issuer().mint(subject, origin=ORIGIN, audience="chat")  # type: ignore[arg-type]
    assert info.value.code == code
    assert isinstance(info.value, ValueError)
    assert await stores.async_store.take("ticketd:*") is None


@pytest.mark.parametrize(
    "subject", [MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER, 0, "a", "Zoë", "x" * 256, "user 42"]
)
async def test_subjects_at_the_limits_are_accepted(stores: Stores, subject: str | int) -> None:
    issued = await stores.issuer().mint(subject, origin=ORIGIN, audience="chat")
    claims = await stores.verifier().redeem(issued.ticket, origin=ORIGIN)
    assert claims.subject == subject
    assert type(claims.subject) is type(subject)


def test_issuer_rejects_ttl_out_of_range(stores: Stores) -> None:
    with pytest.raises(ValueError, match="ttl"):
        stores.issuer(ttl=1000)


def test_negative_leeway_is_refused(stores: Stores) -> None:
    with pytest.raises(ValueError, match="leeway"):
        stores.verifier(leeway=-1)
