"""In-process measurements: verifier vs raw GETDEL and raw tombstone SET, Redis memory per
record and per tombstone, growth, WS handshakes."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis
import redis.asyncio

from ticketd import RedisOptions, TicketStore, TicketVerifier
from ticketd.connection import async_client
from ticketd.tickets import Claims, encode_record, new_ticket, ticket_key
from ticketd.tombstones import encode_tombstone, first_use

from .apps import ORIGIN

PREFIX = "ticketd:"


def percentile(samples: Sequence[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def summary(latencies: list[float], elapsed: float) -> dict[str, float]:
    return {
        "ops": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
    }


def seed_tickets(url: str, count: int, *, ttl_ms: int = 600_000) -> list[str]:
    """Store ``count`` real ticket records (pipelined) and return the tickets."""
    now = time.time()
    claims = Claims(
        subject=12345,
        origin=ORIGIN,
        audience="default",
        issued_at=now,
        expires_at=now + ttl_ms / 1000,
    )
    record = encode_record(claims)
    tickets = [new_ticket() for _ in range(count)]
    with redis.Redis.from_url(url, socket_timeout=120) as client:
        for start in range(0, count, 5000):
            pipe = client.pipeline(transaction=False)
            for ticket in tickets[start : start + 5000]:
                pipe.set(ticket_key(PREFIX, ticket), record, px=ttl_ms)
            pipe.execute()
    return tickets


async def drive(
    items: Sequence[str], concurrency: int, operation: Callable[[str], Awaitable[Any]]
) -> dict[str, float]:
    """Run ``operation`` over ``items`` with ``concurrency`` workers; latency per call."""
    latencies: list[float] = []
    position = 0

    async def worker() -> None:
        nonlocal position
        while position < len(items):
            item = items[position]
            position += 1
            started = time.perf_counter()
            await operation(item)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return summary(latencies, time.perf_counter() - started)


async def warm(client: Any, concurrency: int) -> None:
    """Open the client's connections before the clock starts (a connection's set-up,
    with redis-py's ``CLIENT SETINFO`` calls, is not what the figures compare)."""
    await asyncio.gather(*(client.ping() for _ in range(concurrency)))


async def raw_getdel(url: str, count: int, concurrency: int) -> dict[str, float]:
    keys = [ticket_key(PREFIX, t) for t in seed_tickets(url, count)]
    client = redis.asyncio.Redis.from_url(url, max_connections=concurrency)
    try:
        await warm(client, concurrency)
        result = await drive(keys, concurrency, client.getdel)
    finally:
        await client.aclose()
    return result


async def raw_tombstone_set(url: str, count: int, concurrency: int) -> dict[str, float]:
    """The redeem command alone: ``SET key tombstone XX GET KEEPTTL``, one per ticket."""
    tickets = seed_tickets(url, count)
    tombstones = {
        ticket_key(PREFIX, t): encode_tombstone(first_use("192.0.2.1", now=1.0)) for t in tickets
    }
    client = redis.asyncio.Redis.from_url(url, max_connections=concurrency)

    async def take(key: str) -> Any:
        return await client.set(key, tombstones[key], xx=True, get=True, keepttl=True)

    try:
        await warm(client, concurrency)
        result = await drive(list(tombstones), concurrency, take)
    finally:
        await client.aclose()
    return result


async def verifier_redeem(url: str, count: int, concurrency: int) -> dict[str, float]:
    tickets = seed_tickets(url, count)
    client = async_client(RedisOptions(url=url))
    verifier = TicketVerifier(TicketStore(client))
    accepted = 0

    async def redeem(ticket: str) -> None:
        nonlocal accepted
        await verifier.redeem(ticket, origin=ORIGIN)
        accepted += 1

    try:
        await warm(client, concurrency)
        result = await drive(tickets, concurrency, redeem)
    finally:
        await verifier.aclose()
    if accepted != count:
        raise RuntimeError(f"verifier accepted {accepted} of {count} tickets")
    return result


def memory_per_ticket(url: str, count: int = 100_000) -> dict[str, float]:
    """Redis memory per outstanding ticket, then per tombstone once they are all redeemed
    (tombstones live until the TTL), with ``MEMORY USAGE`` of one key of each."""
    with redis.Redis.from_url(url, socket_timeout=120) as client:
        client.flushall()
        before = int(client.info("memory")["used_memory"])
        tickets = seed_tickets(url, count)
        after = int(client.info("memory")["used_memory"])
        sample_key = ticket_key(PREFIX, tickets[0])
        record = client.get(sample_key) or b""
        record_usage = int(client.memory_usage(sample_key) or 0)
        asyncio.run(_redeem_all(url, tickets))
        redeemed = int(client.info("memory")["used_memory"])
        tombstone = client.get(sample_key) or b""
        tombstone_usage = int(client.memory_usage(sample_key) or 0)
        client.flushall()
    return {
        "bytes_per_ticket": (after - before) / count,
        "bytes_per_tombstone": (redeemed - before) / count,
        "key_bytes": len(sample_key),
        "value_bytes": len(record),
        "tombstone_value_bytes": len(tombstone),
        "memory_usage_record": record_usage,
        "memory_usage_tombstone": tombstone_usage,
    }


async def _redeem_all(url: str, tickets: list[str]) -> None:
    """Redeem every ticket through the verifier (with a client address: the largest
    tombstone), so what is left is what a real deployment keeps."""
    verifier = TicketVerifier(TicketStore(async_client(RedisOptions(url=url))))
    try:
        await drive(
            tickets, 64, lambda t: verifier.redeem(t, origin=ORIGIN, client_ip="203.0.113.9")
        )
    finally:
        await verifier.aclose()


def fill_outstanding(url: str, count: int) -> None:
    """Server-side fill with ``count`` ticket-sized records with a TTL (fast, one script)."""
    script = """
    local value = string.rep('x', tonumber(ARGV[2]))
    for i = 1, tonumber(ARGV[1]) do
      redis.call('SET', ARGV[3] .. string.format('%022d', i), value, 'PX', 600000)
    end
    """
    with redis.Redis.from_url(url, socket_timeout=120) as client:
        client.flushall()
        done = 0
        while done < count:
            step = min(100_000, count - done)
            client.eval(script, 0, step, 90, f"{PREFIX}f{done}:")
            done += step


async def growth(url: str, sizes: Sequence[int], count: int, concurrency: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for size in sizes:
        fill_outstanding(url, size)
        out[str(size)] = await verifier_redeem(url, count, concurrency)
    with redis.Redis.from_url(url, socket_timeout=120) as client:
        client.flushall()
    return out


async def ws_handshakes(url: str, count: int, blocks: int = 10) -> dict[str, Any]:
    """Sequential handshakes against two websockets servers, one plain and one with
    ticket_auth, both up throughout: ``blocks`` turns of ``count / blocks`` handshakes
    each, alternating which server goes first, so a slow spell of a shared machine
    falls on both alike. (Alternating every handshake was tried: the two servers share
    this event loop, and one's tail work — the settle ``SET``, the close — landed in
    the other's next handshake; in blocks it does once per block.)"""
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import serve

    from ticketd.integrations.websockets import select_subprotocol, ticket_auth

    async def handler(connection: Any) -> None:
        await connection.wait_closed()

    verifier = TicketVerifier(TicketStore(async_client(RedisOptions(url=url))))
    tickets = seed_tickets(url, count)
    latencies: dict[str, list[float]] = {"plain": [], "ticketd": []}
    size = max(1, count // blocks)
    try:
        async with (
            serve(handler, "127.0.0.1", 0) as plain,
            serve(
                handler,
                "127.0.0.1",
                0,
                process_response=ticket_auth(verifier),
                select_subprotocol=select_subprotocol,
            ) as guarded,
        ):
            ports = {
                "plain": plain.sockets[0].getsockname()[1],
                "ticketd": guarded.sockets[0].getsockname()[1],
            }
            for index, start in enumerate(range(0, count, size)):
                order = ("plain", "ticketd") if index % 2 == 0 else ("ticketd", "plain")
                for name in order:
                    for ticket in tickets[start : start + size]:
                        started = time.perf_counter()
                        uri = f"ws://127.0.0.1:{ports[name]}/ws?ticket={ticket}"
                        async with connect(uri, origin=ORIGIN):  # type: ignore[arg-type]
                            latencies[name].append(time.perf_counter() - started)
    finally:
        await verifier.aclose()
    results: dict[str, Any] = {name: summary(lat, sum(lat)) for name, lat in latencies.items()}
    results["added_p50_ms"] = results["ticketd"]["p50_ms"] - results["plain"]["p50_ms"]
    results["added_p99_ms"] = results["ticketd"]["p99_ms"] - results["plain"]["p99_ms"]
    results["added_mean_ms"] = 1000 * (1 / results["ticketd"]["ops"] - 1 / results["plain"]["ops"])
    return results


def median(values: Sequence[float]) -> float:
    return statistics.median(values)
