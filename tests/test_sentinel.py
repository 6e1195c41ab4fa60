"""ticketd through Redis Sentinel (master, replica, three sentinels), failover included.

Also ``TICKETD_REDEEM_WAIT_REPLICAS``: a redeem succeeds only when a replica has
acknowledged the delete, and fails closed (503 / StoreUnavailable) otherwise.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from tests.support.redis_topologies import (
    SentinelTopology,
    redis_replicated,
    redis_sentinel,
    wait_for,
)
from tests.support.redisproc import RedisServer
from tests.support.service_support import (
    APP_ORIGIN,
    SERVICE_KEY,
    cookie_for,
    make_settings,
    running_service,
    ticket_keys,
)
from ticketd import (
    BlockingTicketVerifier,
    Reason,
    RedisOptions,
    StoreUnavailable,
    TicketIssuer,
    TicketRejected,
    TicketStore,
    TicketVerifier,
)
from ticketd.connection import async_client
from ticketd.service import Settings

pytestmark = pytest.mark.redis

MINT = "/v1/tickets"
REDEEM = "/v1/tickets/redeem"
FAILOVER_BUDGET = 20.0
"""Seconds the failover test may wait for the service to mint and redeem again."""


@pytest.fixture(scope="module")
def sentinel() -> Iterator[SentinelTopology]:
    """A topology nobody kills (the failover test starts its own)."""
    with redis_sentinel() as topology:
        yield topology


def sentinel_settings(topology: SentinelTopology, **overrides: object) -> Settings:
    return make_settings(
        topology.master.url,
        redis_sentinels=topology.sentinel_setting,
        redis_sentinel_service=topology.service,
        **overrides,
    )


def mint_headers(subject: object) -> dict[str, str]:
    return {"Origin": APP_ORIGIN, "Cookie": f"session={cookie_for(subject)}"}


def redeem_body(ticket: str) -> dict[str, str]:
    return {"ticket": ticket, "origin": APP_ORIGIN, "audience": "chat"}


SERVICE_AUTH = {"Authorization": f"Bearer {SERVICE_KEY}"}


async def test_library_through_sentinel(sentinel: SentinelTopology) -> None:
    options = RedisOptions(url=sentinel.master.url, sentinels=sentinel.sentinels)
    client = async_client(options)
    verifier = TicketVerifier.from_url(
        sentinel.master.url, sentinels=sentinel.sentinels, audience="chat"
    )
    try:
        issued = await TicketIssuer(TicketStore(client)).mint(
            "carol", origin=APP_ORIGIN, audience="chat"
        )
        with sentinel.replica.client() as replica:  # written to the master, replicated
            wait_for(lambda: len(ticket_keys(replica)) == 1, timeout=5, what="replication")
        claims = await verifier.redeem(issued.ticket, origin=APP_ORIGIN)
        assert claims.subject == "carol"
        with pytest.raises(TicketRejected) as again:
            await verifier.redeem(issued.ticket, origin=APP_ORIGIN)
        assert again.value.reason is Reason.INVALID
    finally:
        await verifier.aclose()
        await client.aclose()


async def test_blocking_verifier_through_sentinel(sentinel: SentinelTopology) -> None:
    """The sync client follows Sentinel too, and close() releases the sentinel connections."""
    client = async_client(RedisOptions(url=sentinel.master.url, sentinels=sentinel.sentinels))
    verifier = BlockingTicketVerifier.from_url(
        sentinel.master.url, sentinels=sentinel.sentinels, audience="chat"
    )
    try:
        issued = await TicketIssuer(TicketStore(client)).mint(
            "frank", origin=APP_ORIGIN, audience="chat"
        )
        claims = await asyncio.to_thread(verifier.redeem, issued.ticket, origin=APP_ORIGIN)
        assert claims.subject == "frank"
        with pytest.raises(TicketRejected):
            await asyncio.to_thread(verifier.redeem, issued.ticket, origin=APP_ORIGIN)
    finally:
        verifier.close()
        await client.aclose()


async def test_service_through_sentinel(sentinel: SentinelTopology) -> None:
    settings = sentinel_settings(sentinel, max_outstanding_per_subject=5)
    verifier = TicketVerifier.from_url(
        sentinel.master.url, sentinels=sentinel.sentinels, audience="chat"
    )
    try:
        with running_service(settings) as base:
            async with httpx.AsyncClient(base_url=base, timeout=10) as http:
                assert (await http.get("/readyz")).status_code == 200
                response = await http.post(MINT, headers=mint_headers(5), json={"audience": "chat"})
        assert response.status_code == 201, response.text
        claims = await verifier.redeem(response.json()["ticket"], origin=APP_ORIGIN)
        assert claims.subject == 5
    finally:
        await verifier.aclose()
    with sentinel.master.client() as master:
        assert master.keys("ticketd:rl*"), "rate-limit counters should be on the master"


async def test_redeem_wait_replicas_acknowledged_through_sentinel(
    sentinel: SentinelTopology,
) -> None:
    """TICKETD_REDEEM_WAIT_REPLICAS=1 with a live replica: redeems succeed.

    Timeouts are generous (WAIT may block up to 2 s) so a busy CI machine does not
    turn a slow acknowledgement into a refusal; an acknowledged WAIT returns at once.
    """
    settings = sentinel_settings(
        sentinel, redeem_wait_replicas=1, redis_timeout=4, store_deadline=5
    )
    client = async_client(
        RedisOptions(url=sentinel.master.url, sentinels=sentinel.sentinels, socket_timeout=4)
    )
    try:
        issuer = TicketIssuer(TicketStore(client))
        verifier = TicketVerifier(TicketStore(client, deadline=5, wait_replicas=1), audience="chat")
        issued = await issuer.mint("dave", origin=APP_ORIGIN, audience="chat")
        assert (await verifier.redeem(issued.ticket, origin=APP_ORIGIN)).subject == "dave"

        with running_service(settings) as base:
            async with httpx.AsyncClient(base_url=base, timeout=10) as http:
                minted = await http.post(MINT, headers=mint_headers(6), json={"audience": "chat"})
                assert minted.status_code == 201, minted.text
                body = redeem_body(minted.json()["ticket"])
                redeemed = await http.post(REDEEM, headers=SERVICE_AUTH, json=body)
                assert redeemed.status_code == 200, redeemed.text
                assert redeemed.json()["subject"] == 6
                replay = await http.post(REDEEM, headers=SERVICE_AUTH, json=body)
                assert replay.status_code in (401, 403), replay.text
    finally:
        await client.aclose()


@pytest.fixture
def replicated() -> Iterator[tuple[RedisServer, RedisServer]]:
    with redis_replicated() as pair:
        yield pair


async def test_redeem_wait_replicas_fails_closed_without_replica(
    replicated: tuple[RedisServer, RedisServer],
) -> None:
    """With the replica gone, WAIT cannot be satisfied: 503 / StoreUnavailable, ticket burned."""
    master, replica = replicated
    settings = make_settings(master.url, redeem_wait_replicas=1)  # default timeouts
    client = async_client(RedisOptions(url=master.url, socket_timeout=4))
    try:
        issuer = TicketIssuer(TicketStore(client))
        patient = TicketVerifier(TicketStore(client, deadline=5, wait_replicas=1), audience="chat")
        verifier = TicketVerifier(TicketStore(client, wait_replicas=1), audience="chat")
        plain = TicketVerifier(TicketStore(client), audience="chat")
        before = await issuer.mint("erin", origin=APP_ORIGIN, audience="chat")
        assert (await patient.redeem(before.ticket, origin=APP_ORIGIN)).subject == "erin"

        replica.stop()
        with master.client() as sync:
            wait_for(
                lambda: sync.info("replication")["connected_slaves"] == 0,
                timeout=10,
                what="the master to notice the replica is gone",
            )
            after = await issuer.mint("erin", origin=APP_ORIGIN, audience="chat")
            with pytest.raises(StoreUnavailable, match="not acknowledged"):
                await verifier.redeem(after.ticket, origin=APP_ORIGIN)
            assert ticket_keys(sync) == []  # burned on the master all the same
        with pytest.raises(TicketRejected):
            await plain.redeem(after.ticket, origin=APP_ORIGIN)

        with running_service(settings) as base:
            async with httpx.AsyncClient(base_url=base, timeout=10) as http:
                minted = await http.post(MINT, headers=mint_headers(7), json={"audience": "chat"})
                assert minted.status_code == 201, minted.text
                redeemed = await http.post(
                    REDEEM, headers=SERVICE_AUTH, json=redeem_body(minted.json()["ticket"])
                )
        assert redeemed.status_code == 503, redeemed.text
        assert redeemed.json()["code"] == "store_unavailable"
    finally:
        await client.aclose()


# -- failover under load ---------------------------------------------------------------


@dataclass
class LoadRecord:
    """What the load loop saw; every minted ticket and every successful redeem."""

    statuses: Counter[int] = field(default_factory=Counter)
    minted: list[str] = field(default_factory=list)
    successes: Counter[str] = field(default_factory=Counter)
    redeem_outcomes: Counter[str] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    killed_at: float | None = None
    recovered_at: float | None = None
    stop: bool = False


async def _redeem(verifier: TicketVerifier, ticket: str, record: LoadRecord) -> bool:
    try:
        await verifier.redeem(ticket, origin=APP_ORIGIN)
    except StoreUnavailable:
        record.redeem_outcomes["store_unavailable"] += 1
        return False
    except TicketRejected as exc:
        record.redeem_outcomes[f"rejected:{exc.reason.value}"] += 1
        return False
    except Exception as exc:  # the test reports anything else
        record.unexpected.append(f"{type(exc).__name__}: {exc}")
        return False
    record.successes[ticket] += 1
    record.redeem_outcomes["ok"] += 1
    return True


async def _worker(
    n: int, http: httpx.AsyncClient, verifier: TicketVerifier, record: LoadRecord
) -> None:
    while not record.stop:
        sent_at = time.monotonic()
        response = await http.post(MINT, headers=mint_headers(n), json={"audience": "chat"})
        record.statuses[response.status_code] += 1
        if response.status_code != 201:
            await asyncio.sleep(0.02)
            continue
        ticket = response.json()["ticket"]
        record.minted.append(ticket)
        first = await _redeem(verifier, ticket, record)
        await _redeem(verifier, ticket, record)  # an immediate replay must never succeed
        # Recovered: a mint sent after the kill, and its redeem, both succeeded.
        killed_at = record.killed_at
        if first and killed_at is not None and sent_at > killed_at and not record.recovered_at:
            record.recovered_at = time.monotonic()


@pytest.mark.slow
async def test_master_killed_under_load() -> None:
    with redis_sentinel() as topology:
        old_master = ("127.0.0.1", topology.master.port)
        settings = make_settings(
            topology.master.url,
            redis_sentinels=topology.sentinel_setting,
            rate_limit_per_subject="100000/minute",  # on, so the limiter fails over too
            rate_limit_per_ip="100000/minute",
        )
        verifier = TicketVerifier.from_url(
            topology.master.url, sentinels=topology.sentinels, audience="chat"
        )
        record = LoadRecord()
        try:
            with running_service(settings) as base:
                async with httpx.AsyncClient(base_url=base, timeout=10) as http:
                    workers = [
                        asyncio.create_task(_worker(n, http, verifier, record)) for n in range(4)
                    ]
                    try:
                        await _kill_master_and_wait(topology, record)
                    finally:
                        record.stop = True
                        await asyncio.gather(*workers)
                    ready = await http.get("/readyz")
            replayed = [await _redeem(verifier, t, record) for t in record.minted]
        finally:
            await verifier.aclose()

        assert record.killed_at is not None
        recovery = None if record.recovered_at is None else record.recovered_at - record.killed_at
        print(
            f"\nfailover under load: minted={len(record.minted)} "
            f"redeemed={sum(record.successes.values())} "
            f"mint_statuses={dict(record.statuses)} "
            f"redeem_outcomes={dict(record.redeem_outcomes)} "
            f"replayed_ok={sum(replayed)} "
            f"time_to_recover={'never' if recovery is None else f'{recovery:.2f}s'}"
        )
        assert record.unexpected == [], record.unexpected
        assert recovery is not None, "no mint+redeem succeeded after the master was killed"
        assert topology.master_address() not in (None, old_master)  # promoted, no restart
        assert ready.status_code == 200
        assert set(record.statuses) <= {201, 503}, record.statuses
        assert record.statuses[503] > 0, "the load loop never saw the outage"
        # Counts the replay too: a ticket whose redeems all failed during the outage
        # may be redeemed once by the replay, never a second time.
        assert max(record.successes.values()) == 1, "a ticket was redeemed twice"
        assert record.statuses[201] == len(record.minted)


async def _kill_master_and_wait(topology: SentinelTopology, record: LoadRecord) -> None:
    """Let the load warm up, SIGKILL the master, then wait for a mint+redeem to succeed."""
    started = time.monotonic()
    while len(record.minted) < 20:
        if time.monotonic() - started > FAILOVER_BUDGET:
            raise AssertionError(f"no load before the kill: {record.statuses}")
        await asyncio.sleep(0.02)
    process = topology.master.process
    assert process is not None
    process.kill()  # SIGKILL: no goodbye to the replica or the sentinels
    record.killed_at = time.monotonic()
    while record.recovered_at is None:
        if time.monotonic() - record.killed_at > FAILOVER_BUDGET:
            return  # the assertions report it, with the counts
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)  # and keep the load on a little after recovery
