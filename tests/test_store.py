"""Store contract: the same tests for both twins, against fakeredis and a real redis-server."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest
import redis.asyncio
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, SlotNotCoveredError

from tests.support.redisproc import RedisServer
from tests.support.twins import Kind, Stores
from ticketd import BlockingTicketStore, RedisOptions, StoreUnavailable, TicketStore
from ticketd.connection import async_client
from ticketd.store import StoreOptions


async def test_put_then_take_returns_record_once(stores: Stores, verifier_kind: Kind) -> None:
    store = stores.store
    await store.put("t:k1", b"record", 10_000)
    assert await store.take("t:k1") == b"record"
    assert await store.take("t:k1") is None


async def test_take_unknown_key_is_none(stores: Stores, verifier_kind: Kind) -> None:
    store = stores.store
    assert await store.take("t:nothing") is None


async def test_record_expires_after_ttl(stores: Stores, verifier_kind: Kind) -> None:
    store = stores.store
    await store.put("t:short", b"x", 50)
    await asyncio.sleep(0.2)
    assert await store.take("t:short") is None


async def test_put_refuses_to_overwrite(stores: Stores, verifier_kind: Kind) -> None:
    store = stores.store
    await store.put("t:dup", b"first", 10_000)
    with pytest.raises(StoreUnavailable, match="already exists"):
        await store.put("t:dup", b"second", 10_000)
    assert await store.take("t:dup") == b"first"


async def test_concurrent_takes_yield_one_record(stores: Stores, verifier_kind: Kind) -> None:
    store = stores.store
    await store.put("t:race", b"once", 10_000)
    results = await asyncio.gather(*(store.take("t:race") for _ in range(50)))
    assert results.count(b"once") == 1
    assert results.count(None) == 49


async def test_ping(stores: Stores, verifier_kind: Kind) -> None:
    store = stores.store
    await store.ping()


async def test_ttl_is_set_in_milliseconds(redis_url: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    store = TicketStore(client)
    await store.put("t:ttl", b"x", 30_000)
    pttl = await client.pttl("t:ttl")
    assert 29_000 < pttl <= 30_000
    await store.aclose()


async def test_decode_responses_client_still_returns_bytes(redis_url: str) -> None:
    store = TicketStore(redis.asyncio.Redis.from_url(redis_url, decode_responses=True))
    await store.put("t:s", b"text", 10_000)
    assert await store.take("t:s") == b"text"
    await store.aclose()


async def test_oom_reply_is_store_unavailable(private_redis: RedisServer) -> None:
    with private_redis.client() as admin:
        admin.config_set("maxmemory", "1")
        admin.config_set("maxmemory-policy", "noeviction")
    store = TicketStore(async_client(RedisOptions(url=private_redis.url)))
    with pytest.raises(StoreUnavailable):
        await store.put("t:full", b"x", 10_000)
    await store.aclose()


async def test_dead_server_reported_fast(private_redis: RedisServer) -> None:
    store = TicketStore(async_client(RedisOptions(url=private_redis.url)), deadline=1.0)
    await store.ping()
    private_redis.stop()
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(StoreUnavailable):
        await store.take("t:any")
    # Not a speed assertion: the deadline is 1 s, and the store must have given up
    # on its own rather than hang until pytest-timeout.
    assert loop.time() - started < 10
    await store.aclose()


async def test_slow_server_hits_the_deadline(private_redis: RedisServer) -> None:
    """DEBUG SLEEP holds the server; the store's deadline turns it into StoreUnavailable."""
    store = TicketStore(async_client(RedisOptions(url=private_redis.url)), deadline=0.3)
    await store.put("t:slow", b"x", 60_000)
    admin = redis.asyncio.Redis(port=private_redis.port)
    sleeper = asyncio.create_task(admin.execute_command("DEBUG", "SLEEP", "1.5"))  # type: ignore[no-untyped-call]
    await asyncio.sleep(0.1)
    with pytest.raises(StoreUnavailable):
        await store.take("t:other")
    await sleeper
    await admin.aclose()
    # After the pause the record is intact and the store works again.
    assert await store.take("t:slow") == b"x"
    await store.aclose()


@pytest.mark.parametrize("batch", [True, False])
async def test_put_along_and_discard(any_async_redis: Any, batch: bool) -> None:
    store = TicketStore(any_async_redis, batch=batch)
    replies = await store.put("t:with", b"rec", 10_000, along=[("INCR", "t:c"), ("GET", "t:c")])
    assert replies == [1, b"1"]
    assert await any_async_redis.get("t:with") == b"rec"
    await store.discard("t:with", along=[("DECR", "t:c")])
    assert await any_async_redis.get("t:with") is None
    assert await any_async_redis.get("t:c") == b"0"


@pytest.mark.parametrize("batch", [True, False])
async def test_settle_soon_is_sent_after_the_caller_moves_on(
    any_async_redis: Any, batch: bool
) -> None:
    """The verifier does not wait for the settle: it is queued (batched, or a task of its
    own), reaches Redis by drain() or aclose(), and only ever replaces a key (XX)."""
    store = TicketStore(any_async_redis, batch=batch)
    await any_async_redis.set("t:k", b"[0,1,null,null,null]", px=10_000)
    store.settle_soon("t:k", b'[0,1,null,"S",null]')
    store.settle_soon("t:gone", b'[0,1,null,"S",null]')
    await store.drain()
    assert await any_async_redis.get("t:k") == b'[0,1,null,"S",null]'
    assert 9_000 < await any_async_redis.pttl("t:k") <= 10_000  # KEEPTTL
    assert await any_async_redis.get("t:gone") is None  # XX: never creates a key
    store.settle_soon("t:k", b"[0,2,null,null,null]")
    await store.aclose()  # closing sends what is queued
    assert await any_async_redis.get("t:k") == b"[0,2,null,null,null]"


async def test_a_failed_settle_soon_is_ignored(private_redis: RedisServer) -> None:
    """Best effort: with Redis gone the settle fails quietly (its failure retrieved, so
    nothing is reported as never retrieved), and the store still answers for itself."""
    store = TicketStore(async_client(RedisOptions(url=private_redis.url)), deadline=0.5)
    await store.ping()
    private_redis.stop()
    loop = asyncio.get_running_loop()
    unhandled: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: unhandled.append(context))
    store.settle_soon("t:k", b"[0,1,null,null,null]")
    await store.drain()
    with pytest.raises(StoreUnavailable):
        await store.ping()
    await store.aclose()
    gc.collect()
    await asyncio.sleep(0)
    assert unhandled == []


async def test_failed_put_is_cleaned_up_once_redis_answers(private_redis: RedisServer) -> None:
    """A SET queued behind a slow Redis runs after the deadline; the store deletes it."""
    store = TicketStore(
        async_client(RedisOptions(url=private_redis.url, socket_timeout=5)), deadline=0.2
    )
    await store.put("t:warm", b"x", 60_000)  # a connection is open and ready
    admin = redis.asyncio.Redis(port=private_redis.port)
    sleeper = asyncio.create_task(admin.execute_command("DEBUG", "SLEEP", "1"))  # type: ignore[no-untyped-call]
    await asyncio.sleep(0.1)
    with pytest.raises(StoreUnavailable):
        await store.put("t:late", b"x", 60_000)
    await sleeper
    for _ in range(100):
        if not await admin.exists("t:late"):
            break
        await asyncio.sleep(0.05)
    assert not await admin.exists("t:late")
    await admin.aclose()
    await store.aclose()


@pytest.mark.parametrize(
    "error",
    [
        RedisClusterException("Redis Cluster cannot be connected"),
        SlotNotCoveredError("slot"),
        RedisConnectionError("gone"),
        ConnectionResetError(),
        TimeoutError(),
    ],
)
async def test_every_client_failure_is_store_unavailable(error: Exception) -> None:
    class Failing:
        async def set(self, name: str, value: bytes, *, px: int, nx: bool) -> None:
            raise error

        async def getdel(self, name: str) -> None:
            raise error

        async def delete(self, *names: str) -> None:
            raise error

        async def execute_command(self, *args: object) -> None:
            raise error

        async def ping(self) -> None:
            raise error

    store = TicketStore(Failing(), batch=False, deadline=0.5)
    with pytest.raises(StoreUnavailable):
        await store.take("t:k")
    with pytest.raises(StoreUnavailable):
        await store.ping()
    with pytest.raises(StoreUnavailable):
        await store.put("t:k", b"x", 1000)
    await store.aclose()


def test_blocking_store_maps_cluster_errors() -> None:
    class Failing:
        def set(self, name: str, value: bytes, *, px: int, nx: bool) -> None:
            raise RedisClusterException("down")

        def getdel(self, name: str) -> None:
            raise RedisClusterException("down")

        def execute_command(self, *args: object, **options: object) -> None:
            raise RedisClusterException("down")

        def ping(self) -> None:
            raise RedisClusterException("down")

    store = BlockingTicketStore(Failing())
    with pytest.raises(StoreUnavailable):
        store.take("k")
    with pytest.raises(StoreUnavailable):
        store.ping()
    with pytest.raises(StoreUnavailable):
        store.put("k", b"x", 1000)


async def test_failed_mints_share_one_bounded_janitor(monkeypatch: pytest.MonkeyPatch) -> None:
    """An outage must not start a cleanup task per failed mint (they would storm Redis)."""
    monkeypatch.setattr("ticketd.store.MAX_ORPHANS", 50)
    from tests.support.redisproc import free_port

    store = TicketStore(async_client(RedisOptions(url=f"redis://127.0.0.1:{free_port()}/0")))
    before = len(asyncio.all_tasks())
    for i in range(200):
        with pytest.raises(StoreUnavailable):
            await store.put(f"t:{i}", b"x", 30_000)
    assert len(store._orphans) == 50
    assert len(asyncio.all_tasks()) - before <= 1
    await store.aclose()
    assert store._janitor is not None
    assert store._janitor.done()


def test_store_options_are_the_redis_options_and_the_stores_own() -> None:
    """from_url's typed options cannot drift from RedisOptions (one list, checked here)."""
    redis_fields = set(RedisOptions.__dataclass_fields__) - {"url"}
    assert set(StoreOptions.__annotations__) == redis_fields | {"deadline", "wait_replicas"}
