"""Exactly-once redemption under contention, across OS processes, on a real Redis.

Each round mints one ticket; two worker processes (each with 100 concurrent
asyncio redeems, one connection each) are released together by a barrier and
race to redeem it. Over 50 rounds, exactly one redeem per round may succeed.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Barrier

import pytest

from ticketd import RedisOptions, TicketIssuer, TicketRejected, TicketStore, TicketVerifier
from ticketd.connection import async_client

ORIGIN = "https://app.example.com"
PROCESSES = 2
PER_PROCESS = 100
ROUNDS = 50


class GetThenDelStore(TicketStore):
    """The classic bug (GET, then overwrite): used to prove the harness can see a race."""

    async def take(self, key: str, tombstone: bytes | None = None) -> bytes | None:
        value = await self.client.get(key)  # type: ignore[attr-defined]
        if tombstone is None:
            await self.client.delete(key)
        else:
            await self.client.execute_command("SET", key, tombstone, "XX", "KEEPTTL")
        return value  # type: ignore[no-any-return]


def _worker(url: str, conn: Connection, barrier: Barrier, naive: bool) -> None:
    asyncio.run(_worker_main(url, conn, barrier, naive))


async def _worker_main(url: str, conn: Connection, barrier: Barrier, naive: bool) -> None:
    store_class = GetThenDelStore if naive else TicketStore
    # One connection per attempt (the naive store's direct commands), and room for the
    # batcher's pipelines (each batch in flight holds one: the settles the verifier
    # queues after each accepted ticket, the first use's tombstone put back).
    pool = 2 * PER_PROCESS
    client = async_client(
        RedisOptions(url=url, max_connections=pool, socket_timeout=10, connect_timeout=10)
    )
    # A generous deadline: this test is about atomicity, not latency, on a shared machine.
    verifier = TicketVerifier(store_class(client, deadline=30), audience="chat")
    # Open the connections before the first round so the race is on GETDEL, not on connect.
    await asyncio.gather(*(verifier.ping() for _ in range(PER_PROCESS)))

    async def attempt(ticket: str) -> bool:
        try:
            await verifier.redeem(ticket, origin=ORIGIN)
        except TicketRejected:
            return False
        return True

    while (ticket := conn.recv()) is not None:
        await asyncio.to_thread(barrier.wait, 60)
        try:
            results = await asyncio.gather(*(attempt(ticket) for _ in range(PER_PROCESS)))
        except Exception as exc:  # report, never leave the parent waiting
            conn.send(f"worker failed: {exc!r}")
            continue
        conn.send(sum(results))
    await verifier.aclose()


def _receive(parent: Connection) -> int:
    if not parent.poll(60):
        raise AssertionError("a worker did not answer within 60 s")
    answer = parent.recv()
    assert isinstance(answer, int), answer
    return answer


async def race(redis_url: str, *, naive: bool = False) -> list[int]:
    """Run the rounds; return the number of successful redeems in each."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    pipes = [context.Pipe() for _ in range(PROCESSES)]
    workers = [
        context.Process(target=_worker, args=(redis_url, child, barrier, naive), daemon=True)
        for _, child in pipes
    ]
    for worker in workers:
        worker.start()
    store = TicketStore(async_client(RedisOptions(url=redis_url)))
    issuer = TicketIssuer(store)
    successes_per_round = []
    try:
        for _ in range(ROUNDS):
            issued = await issuer.mint("u", origin=ORIGIN, audience="chat")
            for parent, _ in pipes:
                parent.send(issued.ticket)
            counts = [await asyncio.to_thread(_receive, parent) for parent, _ in pipes]
            successes_per_round.append(sum(counts))
    finally:
        for parent, _ in pipes:
            parent.send(None)
        for worker in workers:
            worker.join(timeout=30)
        await store.aclose()
    assert [w.exitcode for w in workers] == [0] * PROCESSES
    return successes_per_round


async def test_two_processes_200_redeems_50_rounds_exactly_one_success(redis_url: str) -> None:
    assert await race(redis_url) == [1] * ROUNDS


async def test_harness_detects_get_then_del(redis_url: str) -> None:
    """Control: the same harness catches double redemptions of a non-atomic store."""
    successes = await race(redis_url, naive=True)
    assert max(successes) > 1


@pytest.mark.parametrize("attempts", [200])
async def test_single_process_concurrent_redeems(redis_url: str, attempts: int) -> None:
    verifier = TicketVerifier.from_url(redis_url, max_connections=attempts)
    issued = await TicketIssuer(verifier.store).mint("u", origin=ORIGIN, audience="chat")
    outcomes = await asyncio.gather(
        *(verifier.redeem(issued.ticket, origin=ORIGIN) for _ in range(attempts)),
        return_exceptions=True,
    )
    accepted = [o for o in outcomes if not isinstance(o, BaseException)]
    rejected = [o for o in outcomes if isinstance(o, TicketRejected)]
    assert (len(accepted), len(rejected)) == (1, attempts - 1)
    await verifier.aclose()
