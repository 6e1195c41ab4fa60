"""Revocation: the pure rules, the revoker, the watch (push, sweep, resync) on fakeredis
and a real redis-server, and the race of revoke against handshake."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import fakeredis
import pytest
import redis.asyncio

from tests.support.redisproc import free_port
from ticketd import Claims, Reason, TicketRejected
from ticketd.liveness import RevocationWatch
from ticketd.registry import LiveConnection
from ticketd.revocation import (
    Revocation,
    RevocationState,
    Target,
    decode_event,
    decode_state,
    encode_event,
    is_revoked,
    matches,
    session_hash,
    session_ref,
    signed_at,
    state_keys,
    subject_id,
    target_of,
)
from ticketd.revoker import Revoker, check_revoked
from ticketd.sessions import SessionVerifier, issue_session_cookie
from ticketd.tickets import decode_record, encode_record

SECRET = "test-only-session-key-0123456789abcdefghij"
PREFIX = "ticketd:"


def claims(
    subject: object = "user-1", *, session: str | None = "s1", auth_at: float = 1000.0
) -> Claims:
    return Claims(
        subject=subject,  # type: ignore[arg-type]
        origin="https://app.example.com",
        audience="chat",
        issued_at=auth_at + 5,
        expires_at=auth_at + 35,
        session=session,
        auth_at=auth_at,
        session_expires_at=auth_at + 3600,
    )


# -- pure ----------------------------------------------------------------------------


def test_subject_ids_follow_the_protocol_and_keep_types_apart() -> None:
    assert subject_id("42") != subject_id(42)
    assert len(subject_id("alice")) == 22
    # B64(SHA256("s:alice")[:16]) and B64(SHA256("session:abc")[:16]), computed independently.
    import base64
    import hashlib

    def b64(text: str) -> str:
        raw = hashlib.sha256(text.encode()).digest()[:16]
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    assert subject_id("alice") == b64("s:alice")
    assert subject_id(-7) == b64("i:-7")
    assert session_hash("abc") == b64("session:abc")
    with pytest.raises(ValueError, match="2\\*\\*53"):
        subject_id(2**53)
    with pytest.raises(TypeError):
        subject_id(True)


def test_keys_share_the_subject_hash_tag() -> None:
    target = Target(subject_id("u"), session_hash("s"), 5, "conn1")
    keys = state_keys(PREFIX, target)
    tag = "{" + subject_id("u") + "}"
    assert keys == [
        f"{PREFIX}rv:{tag}:u",
        f"{PREFIX}rv:{tag}:s:{session_hash('s')}",
        f"{PREFIX}rv:{tag}:c:conn1",
    ]
    assert "u" not in keys[0].replace(PREFIX, "").split(tag)[0].strip("rv:")


def test_the_subject_rule_uses_auth_time_and_except_session() -> None:
    target = target_of(claims(auth_at=1000.0), "c1")
    state = RevocationState(not_before_ms=1_000_001)
    assert is_revoked(state, target)
    assert not is_revoked(RevocationState(not_before_ms=1_000_000), target)  # a >= nb: later login
    spared = RevocationState(not_before_ms=2_000_000, except_session=session_hash("s1"))
    assert not is_revoked(spared, target)
    other = RevocationState(not_before_ms=2_000_000, except_session=session_hash("s2"))
    assert is_revoked(other, target)
    assert is_revoked(RevocationState(session_revoked=True), target)
    assert is_revoked(RevocationState(connection_revoked=True), target)
    assert not is_revoked(RevocationState(), target)


def test_auth_time_falls_back_to_issued_at() -> None:
    legacy = Claims("u", "https://a.example", "chat", issued_at=10.0, expires_at=40.0)
    assert target_of(legacy).auth_at_ms == 10_000
    assert target_of(legacy).session is None


def test_events_round_trip_and_match_like_the_state() -> None:
    target = target_of(claims(auth_at=1000.0), "c1")
    for revocation in [
        Revocation.of("user-1", at_ms=2_000_000),
        Revocation.of("user-1", at_ms=2_000_000, except_session="s2"),
        Revocation.of("user-1", at_ms=2_000_000, session="s1"),
        Revocation.of("user-1", at_ms=2_000_000, connection="c1"),
    ]:
        fields = encode_event(revocation)
        assert all(isinstance(v, str) for v in fields.values())
        wire = {k.encode(): v.encode() for k, v in fields.items()}
        assert decode_event(wire) == revocation
        assert matches(revocation, target)
    assert not matches(Revocation.of("user-1", at_ms=2_000_000, except_session="s1"), target)
    assert not matches(Revocation.of("user-2", at_ms=2_000_000), target)
    assert not matches(Revocation.of("user-1", at_ms=900_000), target)  # before the login
    assert decode_event({b"v": b"2", b"kind": b"subject"}) is None
    assert decode_event({b"v": b"1", b"kind": b"nope", b"subject": b"x", b"at": b"1"}) is None


def test_revocation_requests_are_validated() -> None:
    with pytest.raises(ValueError, match="not both"):
        Revocation.of("u", at_ms=1, session="s", connection="c")
    with pytest.raises(ValueError, match="whole-subject"):
        Revocation.of("u", at_ms=1, session="s", except_session="t")
    with pytest.raises(ValueError, match="connection"):
        Revocation.of("u", at_ms=1, connection="a b")
    with pytest.raises(ValueError, match="session"):
        Revocation.of("u", at_ms=1, session="")


def test_state_decoding_refuses_garbage() -> None:
    target = Target(subject_id("u"), session_hash("s"), 5)
    assert decode_state(target, [b"[7,null]", None]) == RevocationState(not_before_ms=7)
    assert decode_state(target, [None, b"123"]).session_revoked
    for garbage in (b"[true,null]", b"{}", b"[1]", b"[1,2]"):
        with pytest.raises(ValueError, match="marker"):
            decode_state(target, [garbage, None])


def test_record_v2_round_trips_and_v1_stays_v1() -> None:
    c = claims()
    raw = encode_record(c)
    assert json.loads(raw)[0] == 2
    assert len(json.loads(raw)) == 10
    assert decode_record(raw) == c
    plain = Claims("u", "https://a.example", "chat", issued_at=1.0, expires_at=2.0)
    assert json.loads(encode_record(plain))[0] == 1
    assert decode_record(encode_record(plain)) == plain
    with_extra = Claims("u", "https://a.example", "chat", 1.0, 2.0, extra={"k": 1}, session="x")
    assert decode_record(encode_record(with_extra)) == with_extra
    for bad in (
        b'[2,"u","o","a",1,2,null]',  # v2 without session fields
        b'[2,"u","o","a",1,2,null,5,null,null]',  # session not a string
        b'[2,"u","o","a",1,2,null,"s",true,null]',
        b'[3,"u","o","a",1,2,null]',
    ):
        with pytest.raises(ValueError, match="record"):
            decode_record(bad)


def test_session_ref_uses_the_id_key_or_the_signing_time() -> None:
    verifier = SessionVerifier("ticketd", secret=SECRET, max_age=3600)
    cookie = issue_session_cookie({"user_id": 1, "sid": "abc"}, secret=SECRET)
    payload = verifier.load(cookie)
    signed = signed_at(cookie)
    stateless = session_ref(payload, cookie, max_age=3600, session_id_key=None)
    assert stateless.session == f"t{signed}"
    assert stateless.auth_at == signed
    assert stateless.expires_at == signed + 3600
    assert session_ref(payload, cookie, max_age=3600, session_id_key="sid").session == "abc"
    assert session_ref(payload, cookie, max_age=3600, session_id_key="nope").session == f"t{signed}"


# -- with Redis ----------------------------------------------------------------------


@pytest.fixture(params=["fakeredis", "redis-server"])
async def client(request: pytest.FixtureRequest) -> Any:
    if request.param == "fakeredis":
        c: Any = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    else:
        c = redis.asyncio.Redis.from_url(request.getfixturevalue("redis_url"), socket_timeout=2)
    yield c
    await c.aclose()


class Closes:
    """A fake adapter: records each close instead of closing a socket."""

    def __init__(self) -> None:
        self.codes: list[int] = []
        self.event = asyncio.Event()

    def __call__(self, code: int, reason: str) -> None:
        self.codes.append(code)
        self.event.set()


async def admitted(watch: RevocationWatch, c: Claims) -> tuple[LiveConnection, Closes]:
    entry = await watch.admit(c)
    closes = Closes()
    entry.attach(closes)
    return entry, closes


async def test_push_closes_matching_connections_only(client: Any) -> None:
    revoker = Revoker(client, ttl=3600)
    async with RevocationWatch(client, sweep_interval=60) as watch:
        _, mine = await admitted(watch, claims("user-1", session="s1"))
        _, other_device = await admitted(watch, claims("user-1", session="s2"))
        _, someone_else = await admitted(watch, claims("user-2"))
        await asyncio.sleep(0.05)  # the feed has its tail id
        await revoker.revoke("user-1", except_session="s1")
        await asyncio.wait_for(other_device.event.wait(), 5)
        assert other_device.codes == [4403]
        assert mine.codes == []
        assert someone_else.codes == []
        assert watch.stats.closed == {"push": 1}
        assert len(watch.stats.propagation) == 1


async def test_a_revoked_ticket_is_refused_after_registration(client: Any) -> None:
    revoker = Revoker(client, ttl=3600)
    await revoker.revoke("user-1")  # now > auth_at of the claims below
    async with RevocationWatch(client, sweep_interval=60) as watch:
        with pytest.raises(TicketRejected) as refused:
            await watch.admit(claims("user-1"))
        assert refused.value.reason is Reason.REVOKED
        assert refused.value.status == 403
        assert len(watch.connections) == 0
        await watch.admit(claims("user-2"))  # control: another subject passes
        assert len(watch.connections) == 1


async def test_a_close_requested_before_attach_happens_on_attach(client: Any) -> None:
    async with RevocationWatch(client, sweep_interval=60) as watch:
        entry = await watch.admit(claims("user-1"))
        watch.apply(Revocation.of("user-1", at_ms=2_000_000))
        closes = Closes()
        entry.attach(closes)
        assert closes.codes == [4403]


async def test_the_sweep_closes_what_the_push_missed(client: Any) -> None:
    async with RevocationWatch(client, sweep_interval=0.2) as watch:
        _, closes = await admitted(watch, claims("user-1"))
        # Only the state, no event: what a consumer that missed the push sees.
        revocation = Revocation.of("user-1", at_ms=2_000_000, session="s1")
        await client.set(revocation.state_key(PREFIX), "2000000")
        await asyncio.wait_for(closes.event.wait(), 5)
        assert watch.stats.closed == {"sweep": 1}


FEED_USER = ("feed", "test-only-feed-password")


async def feed_client(client: Any, redis_url: str) -> Any:
    """A client as a separate ACL user, so a test can cut the feed and nothing else."""
    user, password = FEED_USER
    await client.execute_command("ACL", "SETUSER", user, "on", f">{password}", "~*", "&*", "+@all")
    return redis.asyncio.Redis.from_url(
        redis_url, username=user, password=password, socket_timeout=2
    )


async def cut_feed(client: Any) -> None:
    await client.execute_command("ACL", "SETUSER", FEED_USER[0], "off")
    await client.execute_command("CLIENT", "KILL", "USER", FEED_USER[0])


async def test_a_trimmed_stream_triggers_a_resync(redis_url: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url, socket_timeout=2)
    feed = await feed_client(client, redis_url)
    try:
        async with RevocationWatch(client, feed_client=feed, sweep_interval=600) as watch:
            _, closes = await admitted(watch, claims("user-1"))
            await client.xadd(PREFIX + "revocations", {"v": "1", "kind": "noise"})
            for _ in range(100):
                if watch.stats.events:
                    break
                await asyncio.sleep(0.02)
            # Cut the feed, revoke, trim the event away, then let the feed back in.
            await cut_feed(client)
            await Revoker(client, ttl=3600).revoke("user-1")
            await client.xtrim(PREFIX + "revocations", maxlen=0)
            await asyncio.sleep(0.3)
            assert closes.codes == []  # control: nothing closed it while the feed was cut
            await client.execute_command("ACL", "SETUSER", FEED_USER[0], "on")  # type: ignore[no-untyped-call]
            await asyncio.wait_for(closes.event.wait(), 10)
            assert watch.stats.gaps == 1
            assert watch.stats.closed == {"resync": 1}
            assert watch.stats.feed_errors >= 1
    finally:
        await client.aclose()
        await feed.aclose()


class ReadThenRegister(RevocationWatch):
    """Negative control: reads the state first and registers after, the wrong order."""

    async def admit(self, claims: Claims, connection_id: str | None = None) -> LiveConnection:
        self.start()
        probe = target_of(claims)
        if await check_revoked(self.client, self.key_prefix, probe, deadline=self.deadline):
            raise TicketRejected(Reason.REVOKED)
        await asyncio.sleep(0.005)  # the window a revocation can slip through
        return self.connections.add(claims, connection_id)


@pytest.mark.parametrize(
    ("watch_class", "interleavings"), [(RevocationWatch, 1000), (ReadThenRegister, 200)]
)
async def test_revoke_racing_handshakes_leaves_no_revoked_socket(
    redis_url: str, watch_class: type[RevocationWatch], interleavings: int
) -> None:
    """1,000 interleavings of one revocation and one handshake on a real redis-server;
    the wrong order (read, then register) must leave survivors, or the test proves nothing."""
    client = redis.asyncio.Redis.from_url(redis_url, socket_timeout=2, max_connections=512)
    rng = random.Random(13)
    revoker = Revoker(client, ttl=3600, deadline=10)
    survivors = 0
    broken = watch_class is not RevocationWatch
    try:
        async with watch_class(client, sweep_interval=600, deadline=10) as watch:
            await asyncio.sleep(0.05)
            open_sockets: list[tuple[str, Closes]] = []

            async def handshake(subject: str, delay: float) -> None:
                await asyncio.sleep(delay)
                try:
                    _, closes = await admitted(watch, claims(subject, auth_at=1000.0))
                except TicketRejected:
                    return
                open_sockets.append((subject, closes))

            async def revoke(subject: str, delay: float) -> None:
                await asyncio.sleep(delay)
                await revoker.revoke(subject)

            for batch in range(interleavings // 25):
                subjects = [f"race-{batch}-{n}" for n in range(25)]
                work = []
                for subject in subjects:
                    a, b = rng.uniform(0, 0.01), rng.uniform(0, 0.01)
                    work += [handshake(subject, a), revoke(subject, b)]
                await asyncio.gather(*work)
            # Every revocation is written; give the feed time to deliver the last events.
            for _ in range(20 if broken else 100):
                survivors = sum(1 for _, closes in open_sockets if not closes.codes)
                if not survivors:
                    break
                await asyncio.sleep(0.05)
            assert len(open_sockets) > 0  # some handshakes won the race and were then closed
            if broken:
                assert survivors > 0
            else:
                assert survivors == 0
                assert watch.stats.closed.get("sweep", 0) == 0  # by the push, not the backstop
    finally:
        await client.aclose()


async def test_check_revoked_fails_closed_on_an_unreadable_marker(client: Any) -> None:
    target = target_of(claims("user-1"))
    assert not await check_revoked(client, PREFIX, target)
    await client.set(state_keys(PREFIX, target)[0], b"garbage")
    assert await check_revoked(client, PREFIX, target)


async def test_a_stale_feed_is_not_ready_and_closes_with_1012_when_asked() -> None:
    state = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    # The feed points at a port nobody listens on: it never hears from Redis.
    dead = redis.asyncio.Redis(port=free_port(), socket_connect_timeout=0.1, socket_timeout=0.1)
    try:
        async with RevocationWatch(
            state, feed_client=dead, stale_after=0.3, close_when_stale=True, sweep_interval=60
        ) as watch:
            _, closes = await admitted(watch, claims("user-1"))
            fresh = watch.ready
            assert fresh  # control: a fresh feed is ready
            await asyncio.wait_for(closes.event.wait(), 5)
            assert closes.codes == [1012]
            assert not watch.ready
            assert watch.feed_lag > 0.3
            assert watch.stats.closed == {"stale": 1}
        async with RevocationWatch(
            state, feed_client=dead, stale_after=0.3, sweep_interval=60
        ) as keeping:  # the default policy keeps the sockets
            _, kept = await admitted(keeping, claims("user-1"))
            await asyncio.sleep(0.8)
            assert not keeping.ready
            assert kept.codes == []
    finally:
        await state.aclose()
        await dead.aclose()
