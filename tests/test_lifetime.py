"""Connection lifetime: the pure deadline, the scheduler on an event loop (clock injected),
and the issuer's cap of a ticket's TTL at the session's remaining lifetime."""

from __future__ import annotations

import asyncio
import threading

import fakeredis
import pytest
from prometheus_client import CollectorRegistry

from ticketd import Claims, TicketIssuer
from ticketd.exceptions import Reason, SessionExpiring
from ticketd.integrations._common import Admitted, Denied
from ticketd.integrations._live import needs_closer
from ticketd.issuer import MIN_SESSION_REMAINING
from ticketd.lifetime import (
    MAX_JITTER,
    MAX_LIFETIME,
    SESSION_EXPIRED,
    ConnectionLifetime,
    Deadline,
    LifetimeObserver,
    deadline_of,
)
from ticketd.registry import SESSION_ENDED_CLOSE_CODE, LiveConnection
from ticketd.revocation import SessionRef
from ticketd.revocation_metrics import PrometheusLifetimeObserver
from ticketd.store import TicketStore
from ticketd.tickets import decode_record

NOW = 1_800_000_000.0


def claims(session_expires_at: float | None = NOW + 100) -> Claims:
    return Claims(
        subject="user-1",
        origin="https://app.example.com",
        audience="chat",
        issued_at=NOW - 1,
        expires_at=NOW + 29,
        session="s1" if session_expires_at is not None else None,
        auth_at=NOW - 3600 if session_expires_at is not None else None,
        session_expires_at=session_expires_at,
    )


def widest(bound: float) -> float:
    return bound


def none(bound: float) -> float:
    return 0.0


# -- the pure deadline ---------------------------------------------------------------


def test_the_session_expiry_is_the_deadline() -> None:
    assert deadline_of(claims(NOW + 100), NOW, max_lifetime=None, jitter=none) == Deadline(
        NOW + 100, SESSION_EXPIRED
    )


def test_jitter_is_before_the_deadline_and_bounded() -> None:
    seen: list[float] = []

    def record(bound: float) -> float:
        seen.append(bound)
        return bound

    # 10 % of 20 s left is 2 s; of 100 s left it would be 10 s, capped at 5 s.
    short = deadline_of(claims(NOW + 20), NOW, max_lifetime=None, jitter=record)
    long = deadline_of(claims(NOW + 100), NOW, max_lifetime=None, jitter=record)
    assert short == Deadline(NOW + 18, SESSION_EXPIRED)
    assert long == Deadline(NOW + 100 - MAX_JITTER, SESSION_EXPIRED)
    assert seen == [pytest.approx(2.0), MAX_JITTER]


def test_a_jitter_out_of_bounds_is_clamped_never_after_the_deadline() -> None:
    late = deadline_of(claims(NOW + 20), NOW, max_lifetime=None, jitter=lambda b: -7.0)
    early = deadline_of(claims(NOW + 20), NOW, max_lifetime=None, jitter=lambda b: 99.0)
    assert late == Deadline(NOW + 20, SESSION_EXPIRED)
    assert early == Deadline(NOW + 18, SESSION_EXPIRED)


def test_the_max_lifetime_wins_when_it_comes_first() -> None:
    first = deadline_of(claims(NOW + 100), NOW, max_lifetime=10, jitter=none)
    later = deadline_of(claims(NOW + 100), NOW, max_lifetime=1000, jitter=none)
    assert first == Deadline(NOW + 10, MAX_LIFETIME)
    assert later == Deadline(NOW + 100, SESSION_EXPIRED)


def test_claims_without_a_session_get_only_the_max_lifetime() -> None:
    assert deadline_of(claims(None), NOW, max_lifetime=None) is None
    assert deadline_of(claims(None), NOW, max_lifetime=30, jitter=none) == Deadline(
        NOW + 30, MAX_LIFETIME
    )


def test_an_expired_session_closes_at_once() -> None:
    deadline = deadline_of(claims(NOW - 5), NOW, max_lifetime=None, jitter=widest)
    assert deadline == Deadline(NOW - 5, SESSION_EXPIRED)


@pytest.mark.parametrize("bad", [0, -1.0])
def test_max_lifetime_must_be_positive(bad: float) -> None:
    with pytest.raises(ValueError, match="max_lifetime"):
        ConnectionLifetime(max_lifetime=bad)


# -- the scheduler -------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


class Counting(LifetimeObserver):
    def __init__(self) -> None:
        self.causes: list[str] = []

    def closed(self, cause: str) -> None:
        self.causes.append(cause)


class Calls(list[tuple[int, str]]):
    """What the closer was asked; ``seen`` is set on the first call."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = asyncio.Event()

    def __call__(self, code: int, reason: str) -> None:
        self.append((code, reason))
        self.seen.set()


def attached(entry: LiveConnection) -> Calls:
    calls = Calls()
    entry.attach(calls)
    return calls


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_the_timer_closes_with_4401_at_the_deadline() -> None:
    clock, observer = Clock(), Counting()
    lifetime = ConnectionLifetime(observer=observer, clock=clock, jitter=none)
    entry = LiveConnection.of(claims(NOW + 0.05))
    calls = attached(entry)
    lifetime.arm(entry)
    await settle()
    assert calls == []  # control: not before the deadline
    clock.now = NOW + 0.05
    async with asyncio.timeout(5):
        await calls.seen.wait()
    assert calls == [(SESSION_ENDED_CLOSE_CODE, "session ended")]
    assert entry.closing == "session ended"
    assert observer.causes == [SESSION_EXPIRED]
    assert lifetime.closed == {SESSION_EXPIRED: 1}


async def test_max_lifetime_closes_a_connection_without_a_session() -> None:
    clock = Clock()
    lifetime = ConnectionLifetime(max_lifetime=0.01, clock=clock, jitter=none)
    entry = LiveConnection.of(claims(None))
    calls = attached(entry)
    lifetime.arm(entry)
    clock.now = NOW + 1
    async with asyncio.timeout(5):
        await calls.seen.wait()
    assert calls == [(SESSION_ENDED_CLOSE_CODE, "max lifetime")]
    assert lifetime.closed == {MAX_LIFETIME: 1}


async def test_no_timer_without_session_or_max_lifetime() -> None:
    clock = Clock()
    lifetime = ConnectionLifetime(clock=clock)
    entry = LiveConnection.of(claims(None))
    calls = attached(entry)
    lifetime.arm(entry)
    clock.now = NOW + 10**9
    await asyncio.sleep(0.05)
    assert calls == []
    assert lifetime.closed == {}


async def test_ending_the_connection_cancels_its_timer() -> None:
    clock = Clock()
    lifetime = ConnectionLifetime(clock=clock, jitter=none)
    ended, control = LiveConnection.of(claims(NOW + 0.01)), LiveConnection.of(claims(NOW + 0.01))
    ended_calls, control_calls = attached(ended), attached(control)
    lifetime.arm(ended)
    lifetime.arm(control)
    ended.end()
    clock.now = NOW + 1
    async with asyncio.timeout(5):
        await control_calls.seen.wait()
    await asyncio.sleep(0.05)
    assert ended_calls == []
    assert lifetime.closed == {SESSION_EXPIRED: 1}  # the control's only


async def test_a_revoked_connection_is_not_counted_again() -> None:
    clock = Clock()
    lifetime = ConnectionLifetime(clock=clock, jitter=none)
    entry = LiveConnection.of(claims(NOW))
    calls = attached(entry)
    assert entry.close(4403, "revoked")
    lifetime.arm(entry)
    await asyncio.sleep(0.05)
    assert calls == [(4403, "revoked")]
    assert lifetime.closed == {}


def test_a_thread_without_a_loop_uses_the_background_loop() -> None:
    lifetime = ConnectionLifetime(jitter=none)
    entry = LiveConnection.of(claims(0.0))  # the session is long gone: closes at once
    done = threading.Event()
    entry.attach(lambda code, reason: done.set())
    lifetime.arm(entry)  # no running loop in this (test) thread
    assert done.wait(5)
    assert lifetime.closed == {SESSION_EXPIRED: 1}


def test_the_prometheus_observer_counts_by_cause() -> None:
    registry = CollectorRegistry()
    observer = PrometheusLifetimeObserver(registry)
    observer.closed(SESSION_EXPIRED)
    observer.closed(SESSION_EXPIRED)
    name = "ticketd_connection_lifetime_closed_total"
    assert registry.get_sample_value(name, {"cause": SESSION_EXPIRED}) == 2
    assert registry.get_sample_value(name, {"cause": MAX_LIFETIME}) == 0
    assert registry.get_sample_value(name, {"cause": "other"}) is None


# -- the issuer's cap ----------------------------------------------------------------


def issuer(now: float = NOW) -> TicketIssuer:
    return TicketIssuer(TicketStore(fakeredis.FakeAsyncRedis()), clock=lambda: now)


def session(expires_at: float) -> SessionRef:
    return SessionRef(session="s1", auth_at=NOW - 3600, expires_at=expires_at)


def prepare(expires_at: float | None, *, ttl: float | None = None) -> tuple[float, int]:
    prepared = issuer().prepare(
        "user-1",
        origin="https://app.example.com",
        audience="chat",
        ttl=ttl,
        session=session(expires_at) if expires_at is not None else None,
    )
    record = decode_record(prepared.record)
    assert record.expires_at == prepared.issued.expires_at
    return prepared.issued.expires_in, prepared.ttl_ms


def test_the_ttl_is_capped_at_the_session_remaining_lifetime() -> None:
    assert prepare(NOW + 12) == (12.0, 12_000)
    assert prepare(NOW + 3600) == (30.0, 30_000)  # control: a long session keeps the TTL
    assert prepare(None) == (30.0, 30_000)  # no session, no cap
    assert prepare(NOW + 12, ttl=5) == (5.0, 5_000)


def test_a_ticket_never_outlives_its_session() -> None:
    for left in (MIN_SESSION_REMAINING, 2.5, 29.999, 30.0, 31.0, 299.0):
        prepared = issuer().prepare(
            "u", origin="https://app.example.com", audience="chat", session=session(NOW + left)
        )
        assert prepared.issued.expires_at <= NOW + left
        assert prepared.ttl_ms <= round(left * 1000)


@pytest.mark.parametrize("left", [MIN_SESSION_REMAINING - 0.001, 1.0, 0.0, -10.0])
def test_a_session_about_to_expire_cannot_mint(left: float) -> None:
    with pytest.raises(SessionExpiring) as info:
        issuer().prepare(
            "u", origin="https://app.example.com", audience="chat", session=session(NOW + left)
        )
    assert info.value.remaining == pytest.approx(left)


async def test_library_mints_get_the_same_cap() -> None:
    store = TicketStore(fakeredis.FakeAsyncRedis())
    minting = TicketIssuer(store, clock=lambda: NOW)
    issued = await minting.mint(
        "u", origin="https://app.example.com", audience="chat", session=session(NOW + 7)
    )
    assert issued.expires_in == 7.0
    with pytest.raises(SessionExpiring):
        await minting.mint(
            "u", origin="https://app.example.com", audience="chat", session=session(NOW + 1)
        )


def test_only_connections_something_may_close_need_a_closer() -> None:
    with_session, without = Admitted(claims(NOW + 100), None), Admitted(claims(None), None)
    assert needs_closer(None, None, with_session)
    assert not needs_closer(None, None, without)  # the ASGI middleware then skips its wrapper
    assert needs_closer(None, ConnectionLifetime(max_lifetime=60), without)
    assert needs_closer(object(), None, without)
    assert not needs_closer(object(), None, Denied(status=401, reason=Reason.INVALID))
