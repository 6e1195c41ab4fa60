"""Replays: tombstones through both verifiers, the policies with their grace, observers.

Every scenario runs for both twins (``verifier_kind``) on fakeredis and on a real
redis-server (``stores``); WAIT mode runs on a real master and replica.
"""

from __future__ import annotations

import json
from typing import Any

import fakeredis
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.redis_topologies import redis_replicated
from tests.support.twins import AnyVerifier, Kind, Stores, wait_mode_verifier
from ticketd import (
    Reason,
    RedisOptions,
    TicketIssuer,
    TicketRejected,
    TicketStore,
    TicketVerifier,
)
from ticketd.connection import async_client
from ticketd.exceptions import Detail, StoreOperation, StoreUnavailable
from ticketd.issuer import DEFAULT_KEY_PREFIX
from ticketd.replay import (
    RedemptionObserver,
    ReplayPolicy,
    action_for,
    outcome_of,
    replay_policy,
)
from ticketd.revocation import SessionRef, session_hash, subject_id
from ticketd.tickets import ticket_key
from ticketd.tombstones import (
    Replay,
    Tombstone,
    connection_id,
    decode_tombstone,
    encode_tombstone,
    is_tombstone,
    replay_of,
)

ORIGIN = "https://app.example.com"
NOW = 1_800_000_000.0
FIRST_IP = "203.0.113.9"
OTHER_IP = "198.51.100.7"


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


async def rejection(verifier: AnyVerifier, ticket: str, **kwargs: Any) -> TicketRejected:
    kwargs.setdefault("origin", ORIGIN)
    with pytest.raises(TicketRejected) as info:
        await verifier.redeem(ticket, **kwargs)
    return info.value


async def stored(stores: Stores, ticket: str) -> bytes | None:
    value: bytes | None = await stores.async_store.client.get(  # type: ignore[attr-defined]
        ticket_key(DEFAULT_KEY_PREFIX, ticket)
    )
    return value


async def mint(stores: Stores, *, session: bool = False, ttl: float = 30) -> str:
    ref = SessionRef("sess-1", NOW - 60, NOW + 3600) if session else None
    issued = await stores.issuer(clock=lambda: NOW, ttl=ttl).mint(
        "u", origin=ORIGIN, audience="chat", session=ref
    )
    return issued.ticket


# -- the pure part ---------------------------------------------------------------------------


def test_tombstones_round_trip_and_are_never_records() -> None:
    tombstone = Tombstone(1, "abcdefgh", subject_id("u"), session_hash("s"))
    raw = encode_tombstone(tombstone)
    assert is_tombstone(raw)
    assert decode_tombstone(raw) == tombstone
    assert not is_tombstone(b'[1,"u","https://a.example","chat",1,2,null]')
    assert len(raw) <= 72  # it lives until the TTL: small


def test_same_client_needs_both_addresses() -> None:
    tombstone = Tombstone(1_000, None)
    assert not replay_of(tombstone, None, now=2, connection="c").same_client
    assert not replay_of(tombstone, FIRST_IP, now=2, connection="c").same_client


@pytest.mark.parametrize(
    ("policy", "same_client", "since_ms", "subject", "session", "action"),
    [
        (ReplayPolicy.ALERT, False, 10_000, "S", "H", "none"),
        (ReplayPolicy.ALERT, True, 0, "S", "H", "none"),
        (ReplayPolicy.CLOSE_FIRST, True, 2_000, "S", "H", "ignored_retry"),  # within the grace
        (ReplayPolicy.CLOSE_FIRST, True, 2_001, "S", "H", "close_first"),  # just past it
        (ReplayPolicy.CLOSE_FIRST, False, 0, "S", "H", "close_first"),  # another client at once
        (ReplayPolicy.CLOSE_FIRST, False, 0, None, None, "no_target"),  # first use refused
        (ReplayPolicy.REVOKE_SESSION, True, 500, "S", "H", "ignored_retry"),
        (ReplayPolicy.REVOKE_SESSION, False, 500, "S", "H", "revoke_session"),
        (ReplayPolicy.REVOKE_SESSION, False, 500, "S", None, "close_first"),  # no session
    ],
)
def test_policy_actions(
    policy: ReplayPolicy,
    same_client: bool,
    since_ms: int,
    subject: str | None,
    session: str | None,
    action: str,
) -> None:
    replay = Replay(since_ms, same_client, "c", subject, session)
    assert action_for(replay, policy, grace=2.0) == action


@pytest.mark.parametrize("value", ["alert ", "ALERT", "close-first", "", None, 1])
def test_an_unknown_policy_is_a_clear_error(value: object) -> None:
    assert replay_policy("close_first") is ReplayPolicy.CLOSE_FIRST  # the control
    with pytest.raises(ValueError, match="choose one of alert, close_first, revoke_session"):
        replay_policy(value)


# -- through both verifiers ------------------------------------------------------------------


async def test_a_replay_is_invalid_like_an_unknown_ticket_but_says_so(
    stores: Stores, verifier_kind: Kind
) -> None:
    clock = Clock()
    verifier = stores.verifier(audience="chat", clock=clock)
    ticket = await mint(stores)
    await verifier.redeem(ticket, origin=ORIGIN, client_ip=FIRST_IP)
    clock.now += 1.5
    replayed = await rejection(verifier, ticket, client_ip=OTHER_IP)
    unknown = await rejection(verifier, "A" * 43, client_ip=OTHER_IP)
    # What a client could see is the same.
    assert (replayed.reason, replayed.status, str(replayed)) == (
        unknown.reason,
        unknown.status,
        str(unknown),
    )
    assert repr(replayed) == repr(unknown)
    # What the logs and metrics see is not.
    assert (unknown.detail, unknown.replay) == (None, None)
    assert replayed.detail is Detail.REPLAYED
    assert replayed.replay is not None
    assert replayed.replay.since_first_use_ms == 1_500
    assert replayed.replay.same_client is False
    assert replayed.replay.subject == subject_id("u")
    assert replayed.replay.connection == connection_id(ticket)
    assert (outcome_of(replayed), outcome_of(unknown)) == ("replayed", "invalid")


async def test_every_later_use_sees_the_first_one(stores: Stores, verifier_kind: Kind) -> None:
    clock = Clock()
    verifier = stores.verifier(audience="chat", clock=clock)
    ticket = await mint(stores)
    await verifier.redeem(ticket, origin=ORIGIN, client_ip=FIRST_IP)
    clock.now += 1
    await rejection(verifier, ticket, client_ip=OTHER_IP)
    clock.now += 2
    third = await rejection(verifier, ticket, client_ip=FIRST_IP)
    assert third.replay is not None
    assert (third.replay.since_first_use_ms, third.replay.same_client) == (3_000, True)
    assert third.replay.subject == subject_id("u")  # the replay did not erase the first use


async def test_the_tombstone_keeps_the_ttl_and_a_refused_first_use(
    stores: Stores, verifier_kind: Kind
) -> None:
    verifier = stores.verifier(audience="chat", clock=lambda: NOW)
    ticket = await mint(stores, ttl=20)
    with pytest.raises(TicketRejected):  # the first use is refused: burned all the same
        await verifier.redeem(ticket, origin="https://evil.example")
    raw = await stored(stores, ticket)
    assert raw is not None
    assert decode_tombstone(raw) == Tombstone(round(NOW * 1000), None)
    ttl_ms = await stores.async_store.client.pttl(  # type: ignore[attr-defined]
        ticket_key(DEFAULT_KEY_PREFIX, ticket)
    )
    assert 0 < ttl_ms <= 20_000  # KEEPTTL: gone with the ticket's TTL, not kept forever
    replay = (await rejection(verifier, ticket)).replay
    assert replay is not None
    assert replay.subject is None  # nothing was opened, nothing to close


async def test_an_unknown_ticket_leaves_nothing(stores: Stores, verifier_kind: Kind) -> None:
    verifier = stores.verifier(audience="chat")
    ticket = "B" * 42 + "A"
    assert (await rejection(verifier, ticket)).detail is None
    assert await stored(stores, ticket) is None  # XX: no tombstone for what never existed


# -- policies --------------------------------------------------------------------------------


async def revocation_keys(stores: Stores) -> list[str]:
    keys = await stores.async_store.client.keys(f"{DEFAULT_KEY_PREFIX}rv:*")  # type: ignore[attr-defined]
    return sorted(k.decode() for k in keys)


@pytest.mark.parametrize(
    ("policy", "replay_from", "after", "action", "kind"),
    [
        ("alert", OTHER_IP, 0.5, "none", None),
        ("close_first", FIRST_IP, 0.5, "ignored_retry", None),  # a proxy retrying
        ("close_first", FIRST_IP, 5.0, "close_first", "c"),  # the same client, later
        ("close_first", OTHER_IP, 0.5, "close_first", "c"),
        ("revoke_session", FIRST_IP, 0.5, "ignored_retry", None),
        ("revoke_session", OTHER_IP, 0.5, "revoke_session", "s"),
    ],
)
async def test_policies(
    stores: Stores,
    verifier_kind: Kind,
    policy: str,
    replay_from: str,
    after: float,
    action: str,
    kind: str | None,
) -> None:
    clock = Clock()
    verifier = stores.verifier(audience="chat", clock=clock, on_replay=policy, replay_grace=2.0)
    ticket = await mint(stores, session=True)
    await verifier.redeem(ticket, origin=ORIGIN, client_ip=FIRST_IP)
    clock.now += after
    replay = (await rejection(verifier, ticket, client_ip=replay_from)).replay
    assert replay is not None
    assert replay.action == action
    assert replay.retry is (action == "ignored_retry")
    base = f"{DEFAULT_KEY_PREFIX}rv:{{{subject_id('u')}}}"
    expected = {
        None: [],
        "c": [f"{base}:c:{connection_id(ticket)}"],
        "s": [f"{base}:s:{session_hash('sess-1')}"],
    }[kind]
    assert await revocation_keys(stores) == expected


class LateSettle(TicketStore):
    """The first use's settle lands between a replay's take and what follows it."""

    late: tuple[str, bytes] | None = None
    held = False

    async def take(self, key: str, tombstone: bytes | None = None) -> bytes | None:
        raw = await super().take(key, tombstone)
        if self.late is not None:
            await self.settle(*self.late)
            self.late = None
        return raw

    async def settle_in_order(self, key: str, tombstone: bytes) -> None:
        if not self.held:  # the first use's settle: held back until the next take
            self.held, self.late = True, (key, tombstone)
        else:
            await super().settle_in_order(key, tombstone)


async def test_a_replay_racing_the_first_settle_keeps_the_subject(redis_url: str) -> None:
    """A replay that took the first use's tombstone before its settle landed must not
    write it back over the settled one: the policies would lose their target for
    every later use. (Found by a hostile review: the write-back erased the subject.)"""
    store = LateSettle(async_client(RedisOptions(url=redis_url)))
    issuer = TicketIssuer(store, clock=lambda: NOW)
    ref = SessionRef("sess-1", NOW - 60, NOW + 3600)
    ticket = (await issuer.mint("u", origin=ORIGIN, audience="chat", session=ref)).ticket
    clock = Clock()
    verifier = TicketVerifier(store, audience="chat", clock=clock, on_replay="close_first")
    try:
        await verifier.redeem(ticket, origin=ORIGIN, client_ip=FIRST_IP)  # settle held back
        clock.now += 5
        second = await rejection(AnyVerifier(verifier), ticket, client_ip=OTHER_IP)
        assert second.replay is not None
        assert second.replay.action == "no_target"  # the settle had not landed yet
        third = await rejection(AnyVerifier(verifier), ticket, client_ip=OTHER_IP)
        assert third.replay is not None
        assert third.replay.subject == subject_id("u")
        assert third.replay.action == "close_first"
        assert third.replay.since_first_use_ms == 5_000  # the first use's time, kept
    finally:
        await verifier.aclose()


# -- observers -------------------------------------------------------------------------------


class Recorder(RedemptionObserver):
    def __init__(self) -> None:
        self.seen: list[tuple[str, TicketRejected | None]] = []

    def redeemed(self, outcome: str, rejection: TicketRejected | None) -> None:
        self.seen.append((outcome, rejection))


class Broken(RedemptionObserver):
    def redeemed(self, outcome: str, rejection: TicketRejected | None) -> None:
        raise RuntimeError("a bug in a metrics exporter")


async def test_observers_see_every_outcome_and_cannot_fail_a_redeem(
    stores: Stores, verifier_kind: Kind, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    verifier = stores.verifier(audience="chat", clock=lambda: NOW, observers=[Broken(), recorder])
    ticket = await mint(stores)
    assert (await verifier.redeem(ticket, origin=ORIGIN)).subject == "u"
    await rejection(verifier, ticket)
    await rejection(verifier, "short")
    await rejection(verifier, "C" * 42 + "A")
    assert [outcome for outcome, _ in recorder.seen] == ["ok", "replayed", "malformed", "invalid"]
    replayed = recorder.seen[1][1]
    assert replayed is not None
    assert replayed.replay is not None
    assert caplog.text.count("redemption observer Broken failed") == 4


# -- WAIT mode -------------------------------------------------------------------------------


@pytest.mark.redis
@pytest.mark.slow
async def test_wait_mode_keeps_tombstones(verifier_kind: Kind) -> None:
    with redis_replicated() as (master, replica):
        verifier = wait_mode_verifier(verifier_kind, master.url)
        issuer = TicketIssuer.from_url(master.url)
        try:
            issued = await issuer.mint("u", origin=ORIGIN, audience="chat")
            assert (await verifier.redeem(issued.ticket, origin=ORIGIN)).subject == "u"
            replayed = await rejection(verifier, issued.ticket)
            assert replayed.detail is Detail.REPLAYED
            assert replayed.reason is Reason.INVALID
            # The tombstone reached the replica: a failover would not resurrect the ticket.
            import redis

            on_replica = redis.Redis.from_url(replica.url).get(
                ticket_key(DEFAULT_KEY_PREFIX, issued.ticket)
            )
            assert on_replica is not None
            assert is_tombstone(on_replica)
        finally:
            await verifier.close()
            await issuer.store.aclose()


# -- check-config --connect: Redis 6.2 -------------------------------------------------------


async def test_check_config_probes_the_redeem_command(redis_url: str) -> None:
    import redis.asyncio
    from redis.exceptions import ResponseError

    from tests.support.service_support import make_settings
    from ticketd import TicketStore
    from ticketd.service.diagnostics import check_redeem_command

    settings = make_settings(redis_url)
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        assert await check_redeem_command(TicketStore(client, batch=False), settings) is None
        assert await client.keys("*") == []  # XX: the probe wrote nothing

        class OldRedis(TicketStore):  # what Redis 6.0 answers to GET in a SET
            async def take(self, key: str, tombstone: bytes | None = None) -> bytes | None:
                try:
                    raise ResponseError("syntax error")
                except ResponseError as exc:
                    raise StoreUnavailable.from_error(StoreOperation.REDEEM, exc) from exc

        problem = await check_redeem_command(OldRedis(client, batch=False), settings)
        assert problem is not None
        assert "needs Redis 6.2 or later" in problem
        assert "syntax error" in problem
    finally:
        await client.aclose()


_texts = st.none() | st.text(max_size=30) | st.from_regex(r"[A-Za-z0-9_-]{0,22}", fullmatch=True)


@given(
    first_ms=st.integers(min_value=-(2**53), max_value=2**53),
    client=_texts,
    subject=_texts,
    session=_texts,
)
def test_tombstones_are_written_as_json_dumps_writes_them(
    first_ms: int, client: str | None, subject: str | None, session: str | None
) -> None:
    """The hand-written encoder (every redeem writes two) gives json.dumps' bytes,
    escapes and non-ASCII text included, and decodes back to what it was given."""
    tombstone = Tombstone(first_ms, client, subject, session)
    expected = json.dumps([0, first_ms, client, subject, session], separators=(",", ":"))
    assert encode_tombstone(tombstone) == expected.encode("ascii")
    assert decode_tombstone(encode_tombstone(tombstone)) == tombstone


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("leeway", float("nan")),
        ("leeway", float("inf")),
        ("leeway", -1.0),
        ("replay_grace", float("nan")),
        ("replay_grace", -0.1),
        ("revocation_ttl", 0),
        ("revocation_ttl", float("inf")),
    ],
)
def test_verifier_options_are_checked_up_front(option: str, value: float) -> None:
    """Refused when the verifier is built, not at the first replay a policy acts on
    (a revocation_ttl of 0 raised ValueError out of redeem; a NaN leeway disabled the
    clock checks). Found by a hostile review."""
    store = TicketStore(fakeredis.FakeAsyncRedis())
    TicketVerifier(store, leeway=5.0, replay_grace=2.0, revocation_ttl=60)  # the control
    with pytest.raises(ValueError, match=option):
        TicketVerifier(store, **{option: value})  # type: ignore[arg-type]
