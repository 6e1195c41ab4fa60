"""CommandBatcher: one pipeline per loop iteration, each caller its own reply or error."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from tests.support.redisproc import RedisServer
from ticketd.batching import CommandBatcher


class CountingPipelines:
    """Wraps a client and counts pipelines sent."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.pipelines: list[int] = []

    def pipeline(self, transaction: bool = True) -> Any:
        pipe = self.client.pipeline(transaction=transaction)
        original = pipe.execute

        async def execute(raise_on_error: bool = True) -> Any:
            self.pipelines.append(len(pipe.command_stack))
            return await original(raise_on_error=raise_on_error)

        pipe.execute = execute
        return pipe


@pytest.fixture
def client(any_async_redis: Any) -> Any:
    return any_async_redis


async def test_concurrent_callers_share_one_pipeline(client: Any) -> None:
    counting = CountingPipelines(client)
    batcher = CommandBatcher(counting)
    for i in range(50):
        await client.set(f"k{i}", f"v{i}")
    replies = await asyncio.gather(*(batcher.execute([("GETDEL", f"k{i}")]) for i in range(50)))
    assert replies == [[f"v{i}".encode()] for i in range(50)]
    assert counting.pipelines == [50]
    assert await client.dbsize() == 0


async def test_sequential_callers_get_a_batch_each(client: Any) -> None:
    counting = CountingPipelines(client)
    batcher = CommandBatcher(counting)
    assert await batcher.execute([("SET", "a", "1"), ("GET", "a")]) == [True, b"1"]
    assert await batcher.execute([("GETDEL", "a")]) == [b"1"]
    assert counting.pipelines == [2, 1]


async def test_one_failing_command_fails_only_its_caller(client: Any) -> None:
    batcher = CommandBatcher(client)
    await client.rpush("a-list", "x")
    await client.set("k", "v")
    results = await asyncio.gather(
        batcher.execute([("GETDEL", "a-list")]),
        batcher.execute([("GETDEL", "k")]),
        return_exceptions=True,
    )
    assert isinstance(results[0], ResponseError)
    assert results[1] == [b"v"]


async def test_max_batch_splits(client: Any) -> None:
    counting = CountingPipelines(client)
    batcher = CommandBatcher(counting, max_batch=4)
    replies = await asyncio.gather(*(batcher.execute([("PING",)]) for _ in range(10)))
    assert len(replies) == 10
    assert sorted(counting.pipelines) == [2, 4, 4]


async def test_connection_failure_fails_every_caller(private_redis: RedisServer) -> None:
    client = redis.asyncio.Redis(
        port=private_redis.port, socket_timeout=0.5, socket_connect_timeout=0.5
    )
    batcher = CommandBatcher(client)
    await batcher.execute([("SET", "k", "v")])
    private_redis.stop()
    results = await asyncio.gather(
        *(batcher.execute([("GETDEL", "k")]) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, RedisConnectionError | OSError) for r in results), results
    await batcher.aclose()
    await client.aclose()


async def test_caller_that_gives_up_does_not_break_the_batch(client: Any) -> None:
    batcher = CommandBatcher(client)
    await client.set("k1", "v1")
    await client.set("k2", "v2")
    impatient = asyncio.create_task(batcher.execute([("GETDEL", "k1")]))
    patient = asyncio.create_task(batcher.execute([("GETDEL", "k2")]))
    await asyncio.sleep(0)
    impatient.cancel()
    assert await patient == [b"v2"]
    with pytest.raises(asyncio.CancelledError):
        await impatient
    await batcher.aclose()
    # The cancelled caller's command may still have run: fail closed, never twice.
    assert await client.get("k2") is None


async def test_a_broken_client_fails_callers_instead_of_stranding_them() -> None:
    class Broken:
        def pipeline(self, transaction: bool = True) -> Any:
            raise RuntimeError("cannot build a pipeline")

    batcher = CommandBatcher(Broken())
    results = await asyncio.wait_for(
        asyncio.gather(*(batcher.execute([("PING",)]) for _ in range(3)), return_exceptions=True),
        timeout=5,
    )
    assert [type(r) for r in results] == [RuntimeError] * 3


async def test_cancelled_batch_is_a_store_failure_for_its_callers(client: Any) -> None:
    gate = asyncio.Event()

    class Slow:
        def pipeline(self, transaction: bool = True) -> Any:
            pipe = client.pipeline(transaction=transaction)

            async def execute(raise_on_error: bool = True) -> Any:
                await gate.wait()
                raise AssertionError("not reached")

            pipe.execute = execute
            return pipe

    batcher = CommandBatcher(Slow())
    caller = asyncio.create_task(batcher.execute([("PING",)]))
    await asyncio.sleep(0.05)
    for task in list(batcher._in_flight):
        task.cancel()
    with pytest.raises(RedisConnectionError, match="batch cancelled"):
        await caller


async def test_a_set_with_get_returns_the_old_value(client: Any) -> None:
    """redis-py parses SET replies into a bool unless told about GET: the redeem's
    ``SET key tombstone XX GET KEEPTTL`` must return the record, through the batcher too."""
    batcher = CommandBatcher(client)
    await client.set("k", b"record", px=30_000)
    (old,) = await batcher.execute([("SET", "k", b"tombstone", "XX", "GET", "KEEPTTL")])
    assert old == b"record"
    (plain,) = await batcher.execute([("SET", "k", b"again", "XX", "KEEPTTL")])
    assert plain is True  # the control: without GET, redis-py's bool
    assert 0 < await client.pttl("k") <= 30_000  # KEEPTTL
    (missing,) = await batcher.execute([("SET", "absent", b"t", "XX", "GET", "KEEPTTL")])
    assert missing is None
    assert not await client.exists("absent")  # XX wrote nothing
