"""ticketd on a real three-master Redis Cluster: library, service, races, WAIT routing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
import redis

from tests.support.redis_topologies import ClusterTopology, redis_cluster
from tests.support.service_support import (
    APP_ORIGIN,
    PREFIX,
    cookie_for,
    make_settings,
    running_service,
    ticket_keys,
)
from ticketd import (
    Reason,
    RedisOptions,
    StoreUnavailable,
    TicketIssuer,
    TicketRejected,
    TicketStore,
    TicketVerifier,
)
from ticketd.connection import async_client

pytestmark = pytest.mark.redis

TICKETS = 200


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterTopology]:
    with redis_cluster() as topology:
        yield topology


@pytest.fixture
def nodes(cluster: ClusterTopology) -> Iterator[list[redis.Redis]]:
    """A plain client per master, each flushed first (FLUSHALL is per node on Cluster)."""
    clients = [node.client() for node in cluster.nodes]
    try:
        for client in clients:
            client.flushall()
        yield clients
    finally:
        for client in clients:
            client.close()


def tickets_per_node(nodes: list[redis.Redis]) -> list[int]:
    return [len(ticket_keys(client)) for client in nodes]


@pytest.mark.slow
async def test_library_tickets_spread_over_masters_and_redeem_once(
    cluster: ClusterTopology, nodes: list[redis.Redis]
) -> None:
    client = async_client(RedisOptions(url=cluster.url, cluster=True))
    verifier = TicketVerifier.from_url(cluster.url, cluster=True, audience="chat")
    try:
        issuer = TicketIssuer(TicketStore(client))
        issued = [
            await issuer.mint(f"user-{n}", origin=APP_ORIGIN, audience="chat")
            for n in range(TICKETS)
        ]
        per_node = tickets_per_node(nodes)
        assert sum(per_node) == TICKETS
        assert all(count > 0 for count in per_node), per_node

        for n, ticket in enumerate(issued):
            claims = await verifier.redeem(ticket.ticket, origin=APP_ORIGIN)
            assert claims.subject == f"user-{n}"
        for ticket in issued:
            with pytest.raises(TicketRejected) as again:
                await verifier.redeem(ticket.ticket, origin=APP_ORIGIN)
            assert again.value.reason is Reason.INVALID
        assert tickets_per_node(nodes) == [0, 0, 0]
    finally:
        await verifier.aclose()
        await client.aclose()


async def test_service_on_cluster_with_rate_limits(
    cluster: ClusterTopology, nodes: list[redis.Redis]
) -> None:
    """TICKETD_REDIS_CLUSTER: tickets and rate-limit counters both live on the cluster."""
    settings = make_settings(
        cluster.url,
        redis_cluster=True,
        rate_limit_per_subject="100/minute",
        rate_limit_per_ip="100/minute",
        max_outstanding_per_subject=3,
    )
    verifier = TicketVerifier.from_url(cluster.url, cluster=True, audience="chat")
    headers = {"Origin": APP_ORIGIN, "Cookie": f"session={cookie_for(42)}"}
    try:
        with running_service(settings) as base:
            async with httpx.AsyncClient(base_url=base, timeout=10) as http:
                assert (await http.get("/readyz")).status_code == 200
                responses = [
                    await http.post("/v1/tickets", headers=headers, json={"audience": "chat"})
                    for _ in range(4)
                ]
        assert [r.status_code for r in responses] == [201, 201, 201, 429], responses[-1].text
        assert responses[-1].json()["code"] == "too_many_outstanding"
        assert sum(tickets_per_node(nodes)) == 3
        counters = [k for client in nodes for k in client.keys(f"{PREFIX}rl*")]
        assert counters, "the rate limiter should keep its counters in the cluster"
        for response in responses[:3]:
            claims = await verifier.redeem(response.json()["ticket"], origin=APP_ORIGIN)
            assert claims.subject == 42
            assert claims.audience == "chat"
    finally:
        await verifier.aclose()


async def test_concurrent_redeems_of_one_ticket_on_cluster(
    cluster: ClusterTopology, nodes: list[redis.Redis]
) -> None:
    rounds, per_verifier = 20, 25
    client = async_client(RedisOptions(url=cluster.url, cluster=True))
    verifiers = [
        TicketVerifier.from_url(cluster.url, cluster=True, audience="chat") for _ in range(2)
    ]

    reasons: list[Reason] = []

    async def attempt(verifier: TicketVerifier, ticket: str) -> bool:
        try:
            await verifier.redeem(ticket, origin=APP_ORIGIN)
        except TicketRejected as exc:
            reasons.append(exc.reason)
            return False
        return True

    try:
        issuer = TicketIssuer(TicketStore(client))
        for verifier in verifiers:
            await verifier.ping()  # connect first: the race is on GETDEL, not on connect
        wins = []
        for n in range(rounds):
            ticket = (await issuer.mint(n, origin=APP_ORIGIN, audience="chat")).ticket
            results = await asyncio.gather(
                *(attempt(v, ticket) for v in verifiers for _ in range(per_verifier))
            )
            wins.append(sum(results))
        assert wins == [1] * rounds
        assert set(reasons) == {Reason.INVALID}
    finally:
        for verifier in verifiers:
            await verifier.aclose()
        await client.aclose()


async def test_replicated_redeem_waits_on_the_node_holding_the_key(
    cluster: ClusterTopology, nodes: list[redis.Redis]
) -> None:
    """WAIT must follow GETDEL to the key's node: it counts its own connection's writes.

    This cluster has no replicas, so each redeem fails closed; with one ticket on
    each master, every master must have run exactly one WAIT (an unrouted WAIT would
    land on the client's default node three times).
    """
    client = async_client(RedisOptions(url=cluster.url, cluster=True))
    try:
        issuer = TicketIssuer(TicketStore(client))
        verifier = TicketVerifier(TicketStore(client, wait_replicas=1), audience="chat")
        by_node: dict[int, str] = {}
        for _ in range(100):
            before = tickets_per_node(nodes)
            issued = await issuer.mint("bob", origin=APP_ORIGIN, audience="chat")
            after = tickets_per_node(nodes)
            owner = next(i for i in range(len(nodes)) if after[i] > before[i])
            by_node.setdefault(owner, issued.ticket)
            if len(by_node) == len(nodes):
                break
        assert sorted(by_node) == list(range(len(nodes)))
        for node in nodes:
            node.config_resetstat()
        for ticket in by_node.values():
            with pytest.raises(StoreUnavailable, match="not acknowledged"):
                await verifier.redeem(ticket, origin=APP_ORIGIN)
        waits = [
            node.info("commandstats").get("cmdstat_wait", {}).get("calls", 0) for node in nodes
        ]
        assert waits == [1] * len(nodes), waits
        plain = TicketVerifier(TicketStore(client), audience="chat")
        for ticket in by_node.values():  # burned all the same
            with pytest.raises(TicketRejected):
                await plain.redeem(ticket, origin=APP_ORIGIN)
    finally:
        await client.aclose()
