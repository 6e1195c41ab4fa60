"""RoundTrip: the groups of one loop iteration go as pipelines of at most ``max_batch``
commands, a group never split, each group its own replies; no caller is ever stranded."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from ticketd import batching, roundtrip
from ticketd.batching import CommandBatcher
from ticketd.exceptions import StoreUnavailable
from ticketd.roundtrip import RoundTrip


@pytest.fixture
def pipelines(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The command count of every pipeline RoundTrip sends, in the order sent."""
    sent: list[int] = []
    original = batching.send_batch

    async def counting(client: Any, pool: Any, commands: Sequence[Any]) -> list[Any]:
        sent.append(len(commands))
        return await original(client, pool, commands)

    monkeypatch.setattr(roundtrip, "send_batch", counting)
    return sent


def _group(i: int) -> list[tuple[Any, ...]]:
    return [("SET", f"k{i}", f"v{i}"), ("GET", f"k{i}"), ("DEL", f"k{i}")]


async def test_a_burst_goes_as_pipelines_of_at_most_64_commands(
    any_async_redis: Any, pipelines: list[int]
) -> None:
    trip = RoundTrip(any_async_redis, deadline=5.0)
    replies = await asyncio.gather(*(trip.send(_group(i)) for i in range(30)))
    assert replies == [[True, f"v{i}".encode(), 1] for i in range(30)]
    # 21 groups of 3 fill 63 commands; the 22nd would make 66: it opens the next one.
    assert pipelines == [63, 27]
    await trip.aclose()


async def test_a_group_larger_than_max_batch_goes_alone_and_whole(
    any_async_redis: Any, pipelines: list[int]
) -> None:
    trip = RoundTrip(any_async_redis, deadline=5.0, max_batch=4)
    big = [("INCR", "n") for _ in range(6)]
    replies = await asyncio.gather(
        trip.send(_group(1)), trip.send(big), trip.send(_group(2)), trip.send(_group(3))
    )
    assert replies[1] == [1, 2, 3, 4, 5, 6]
    assert replies[0] == [True, b"v1", 1]
    assert replies[3] == [True, b"v3", 1]
    assert pipelines == [3, 6, 3, 3]
    await trip.aclose()


async def test_groups_within_max_batch_share_one_pipeline(
    any_async_redis: Any, pipelines: list[int]
) -> None:
    trip = RoundTrip(any_async_redis, deadline=5.0, max_batch=6)
    await asyncio.gather(trip.send(_group(1)), trip.send(_group(2)))
    assert pipelines == [6]
    await trip.aclose()


async def test_a_burst_takes_at_most_max_pipelines_connections(
    any_async_redis: Any, pipelines: list[int]
) -> None:
    trip = RoundTrip(any_async_redis, deadline=5.0, max_batch=4, max_pipelines=8)
    replies = await asyncio.gather(*(trip.send(_group(i)) for i in range(30)))
    assert replies == [[True, f"v{i}".encode(), 1] for i in range(30)]
    # 90 commands over at most 8 pipelines: each takes up to ceil(90 / 8) = 12 (4 groups).
    assert pipelines == [12] * 7 + [6]
    await trip.aclose()


async def test_pipelines_in_flight_count_against_max_pipelines(
    any_async_redis: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[int] = []
    release = asyncio.Event()
    original = batching.send_batch

    async def held(client: Any, pool: Any, commands: Sequence[Any]) -> list[Any]:
        sent.append(len(commands))
        if len(sent) <= 2:  # the first two pipelines stay on the wire until released
            await release.wait()
        return await original(client, pool, commands)

    monkeypatch.setattr(roundtrip, "send_batch", held)
    trip = RoundTrip(any_async_redis, deadline=5.0, max_batch=3, max_pipelines=3)
    first = [asyncio.ensure_future(trip.send(_group(i))) for i in range(2)]
    await asyncio.sleep(0.01)
    assert sent == [3, 3]  # two in flight
    burst = [asyncio.ensure_future(trip.send(_group(i))) for i in range(2, 6)]
    await asyncio.sleep(0.01)
    # One connection left of three: the burst of 12 commands goes as one pipeline.
    assert sent == [3, 3, 12]
    release.set()
    replies = await asyncio.gather(*first, *burst)
    assert replies == [[True, f"v{i}".encode(), 1] for i in range(6)]
    await trip.aclose()


async def _cancelled_before_it_ran(
    owner: RoundTrip | CommandBatcher, call: Callable[[], Awaitable[Any]]
) -> asyncio.Future[Any]:
    """Queue one caller, then cancel the pipeline task made for it before its first step
    (a coroutine cancelled then never enters its ``try``/``finally``)."""
    caller = asyncio.ensure_future(call())
    for _ in range(10):
        if owner._in_flight:
            break
        await asyncio.sleep(0)
    (task,) = owner._in_flight
    coro = task.get_coro()
    assert inspect.iscoroutine(coro)
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CREATED
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await asyncio.sleep(0)
    return caller


async def test_a_pipeline_cancelled_before_it_ran_fails_its_groups(any_async_redis: Any) -> None:
    trip = RoundTrip(any_async_redis, deadline=1.0)
    caller = await _cancelled_before_it_ran(trip, lambda: trip.send([("PING",)]))
    assert caller.done()
    with pytest.raises(StoreUnavailable):
        caller.result()
    await trip.aclose()


async def test_a_batch_cancelled_before_it_ran_fails_its_callers(any_async_redis: Any) -> None:
    batcher = CommandBatcher(any_async_redis, deadline=1.0)
    caller = await _cancelled_before_it_ran(batcher, lambda: batcher.execute([("PING",)]))
    assert caller.done()
    with pytest.raises(RedisConnectionError):
        caller.result()
    await batcher.aclose()
