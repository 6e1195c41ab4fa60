"""CommandBatcher: one pipeline per loop iteration, each caller its own reply or error."""

from __future__ import annotations

import asyncio
from typing import Any

import fakeredis
import hiredis
import pytest
import redis.asyncio
from redis._parsers import _AsyncRESP2Parser
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError, ResponseError

from tests.support.redisproc import RedisServer
from ticketd.batching import CommandBatcher, direct_pool
from ticketd.connection import RedisOptions, async_client


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


# The direct wire (exchange): redis-py's asyncio client with hiredis over RESP2.

PARITY_COMMANDS: list[tuple[Any, ...]] = [
    ("SET", "p:a", b"1", "PX", 30_000, "NX"),
    ("SET", "p:a", b"2", "PX", 30_000, "NX"),  # not stored: None
    ("SET", "p:a", b"3", "XX", "GET", "KEEPTTL"),  # the old value
    ("SET", "p:a", b"4", "XX", "KEEPTTL"),  # True
    ("INCR", "p:n"),
    ("PEXPIRE", "p:n", 5_000),
    ("MGET", "p:a", "p:missing"),
    ("LPUSH", "p:a", "x"),  # WRONGTYPE: an error in place
    ("GETDEL", "p:a"),
    ("GETDEL", "p:a"),
    ("DEL", "p:n"),
    ("PING",),
]


async def test_the_direct_wire_answers_as_redis_pys_pipeline(redis_url: str) -> None:
    """Every reply the batcher's own wire gives equals what redis-py's pipeline gives
    for the same commands on the same data, error replies included (same class)."""
    client = async_client(RedisOptions(url=redis_url))
    try:
        assert direct_pool(client) is client.connection_pool
        pipe = client.pipeline(transaction=False)
        for command in PARITY_COMMANDS:
            pipe.execute_command(*command, **({"get": True} if "GET" in command else {}))
        expected = await pipe.execute(raise_on_error=False)
        await client.flushall()

        def no_pipeline(transaction: bool = True) -> Any:
            raise AssertionError("the direct wire does not build a pipeline")

        client.pipeline = no_pipeline
        batcher = CommandBatcher(client)
        results = await asyncio.gather(
            *(batcher.execute([c]) for c in PARITY_COMMANDS), return_exceptions=True
        )
        got = [r[0] if isinstance(r, list) else r for r in results]
        assert [type(g) for g in got] == [type(e) for e in expected]
        assert [g for g in got if not isinstance(g, Exception)] == [
            e for e in expected if not isinstance(e, Exception)
        ]
        assert (expected[1], expected[2], expected[3]) == (None, b"1", True)
        assert isinstance(got[7], ResponseError)
        assert "WRONGTYPE" in str(got[7])
    finally:
        await client.aclose()


async def test_a_batch_cut_off_by_its_deadline_leaves_no_reply_behind(redis_url: str) -> None:
    """A batch abandoned mid-read must not hand its late reply to the next caller of
    the same pooled connection: the connection is dropped, the next batch reconnects."""
    client = async_client(RedisOptions(url=redis_url, socket_timeout=5, max_connections=1))
    try:
        await client.set("k", b"value")
        batcher = CommandBatcher(client, deadline=0.2)
        with pytest.raises(TimeoutError):
            await batcher.execute([("BLPOP", "empty-list", 1)])
        await batcher.drain()
        (connection,) = client.connection_pool._available_connections
        assert not connection.is_connected
        await client.rpush("empty-list", "late")  # what BLPOP would have answered
        assert await batcher.execute([("GET", "k")]) == [b"value"]
        assert await client.lrange("empty-list", 0, -1) == [b"late"]  # BLPOP never ran again
    finally:
        await client.aclose()


async def test_a_readonly_reply_drops_the_connection(redis_server: RedisServer) -> None:
    """A demoted master answers writes with READONLY: that caller gets the error, the
    others their replies, and the connection is dropped so that the next checkout
    (a Sentinel pool) connects to whatever is master then."""
    replica = RedisServer("--replicaof", "127.0.0.1", str(redis_server.port)).start()
    client = async_client(RedisOptions(url=replica.url))
    try:
        batcher = CommandBatcher(client)
        write: Any
        read: Any
        write, read = await asyncio.gather(
            batcher.execute([("SET", "k", b"v")]),
            batcher.execute([("PING",)]),
            return_exceptions=True,
        )
        assert isinstance(write, ReadOnlyError)
        assert read == [True]
        await batcher.drain()
        assert all(not c.is_connected for c in client.connection_pool._available_connections)
        assert await batcher.execute([("PING",)]) == [True]  # reconnects
    finally:
        await client.aclose()
        replica.close()


@pytest.mark.parametrize("protocol", [None, 2, 3])
def test_which_clients_take_the_direct_wire(protocol: int | None) -> None:
    standalone = redis.asyncio.Redis(port=1, protocol=protocol)
    assert direct_pool(standalone) is standalone.connection_pool  # RESP3 is the default
    assert direct_pool(redis.asyncio.Redis(port=1, single_connection_client=True)) is None
    assert direct_pool(fakeredis.FakeAsyncRedis()) is None
    pool = redis.asyncio.ConnectionPool(port=1, parser_class=_AsyncRESP2Parser)
    assert direct_pool(redis.asyncio.Redis(connection_pool=pool)) is None
    assert direct_pool(redis.asyncio.RedisCluster.__new__(redis.asyncio.RedisCluster)) is None


class Resp3ServerThatPushes:
    """Just enough RESP3 for a redeem: ``HELLO``, and ``GETDEL k`` answered ``record-of-k``,
    with a maintenance push (``MIGRATING``) before the first reply; anything else ``OK``."""

    def __init__(self) -> None:
        self.pushed = False
        self.done = asyncio.Event()

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        parser = hiredis.Reader()
        try:
            while data := await reader.read(65536):
                parser.feed(data)
                writer.write(self._answer(parser))
                await writer.drain()
        finally:
            writer.close()
            self.done.set()

    def _answer(self, parser: hiredis.Reader) -> bytes:
        out = b""
        while (command := parser.gets()) is not False:
            name = command[0].upper()
            if name == b"HELLO":
                out += b"%1\r\n$5\r\nproto\r\n:3\r\n"
            elif name == b"GETDEL":
                if not self.pushed:
                    out += b">3\r\n$9\r\nMIGRATING\r\n:1\r\n:10\r\n"
                    self.pushed = True
                value = b"record-of-" + command[1]
                out += b"$%d\r\n%s\r\n" % (len(value), value)
            else:
                out += b"+OK\r\n"
        return out


async def test_a_resp3_push_between_replies_is_not_taken_for_one() -> None:
    """redis-py speaks RESP3 by default, and a server may push a maintenance notice
    between replies: read as a reply, it would hand every caller of the batch the
    previous caller's record, and leave the last one for the next batch."""
    handler = Resp3ServerThatPushes()
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = async_client(RedisOptions(url=f"redis://127.0.0.1:{port}/0", max_connections=1))
    try:
        batcher = CommandBatcher(client, deadline=2.0)
        assert direct_pool(client) is not None
        first = await asyncio.gather(
            batcher.execute([("GETDEL", "ticketA")]), batcher.execute([("GETDEL", "ticketB")])
        )
        assert handler.pushed
        assert list(first) == [[b"record-of-ticketA"], [b"record-of-ticketB"]]
        assert await batcher.execute([("GETDEL", "ticketC")]) == [b"record-of-ticketC"]
    finally:
        await client.aclose()
        await asyncio.wait_for(handler.done.wait(), 5)
        server.close()
        await server.wait_closed()
