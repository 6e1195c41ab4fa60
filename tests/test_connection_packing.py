"""asyncio clients pack commands with hiredis: the same bytes on the wire as redis-py's packer."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio
from redis.exceptions import DataError

from ticketd.connection import RedisOptions, _HiredisPacking, async_client

pytestmark = pytest.mark.redis

COMMANDS: list[tuple[Any, ...]] = [
    ("SET", "k", b"v", "PX", 30000, "NX"),
    ("EVALSHA", b"0" * 40, 1, "ticketd:rl:ip:192.0.2.1", 1_800_000_000, b"9:60000:0:0:1:120000"),
    ("SET", "k", "\u00e9t\u00e9", "EX", 10),
    ("SET", "k", 1.5),
    ("SET", "k", 10**20),
    ("SET", "k", memoryview(b"view")),
    ("SET", "k", bytearray(b"array")),
    ("SCRIPT LOAD", "return 1"),
    (b"CONFIG GET", b"maxmemory"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: str(c[0]))
def test_the_same_bytes_as_redis_py(command: tuple[Any, ...]) -> None:
    plain = redis.asyncio.Connection()
    packed = async_client(RedisOptions()).connection_pool.make_connection()
    assert isinstance(packed, _HiredisPacking)
    assert not isinstance(plain, _HiredisPacking)  # control: redis-py's own packer
    assert b"".join(packed.pack_command(*command)) == b"".join(plain.pack_command(*command))
    assert b"".join(packed.pack_commands(COMMANDS)) == b"".join(plain.pack_commands(COMMANDS))


def test_what_redis_py_refuses_is_refused() -> None:
    packed = async_client(RedisOptions()).connection_pool.make_connection()
    with pytest.raises(DataError):
        packed.pack_command("SET", "k", True)


async def test_commands_and_pipelines_round_trip(redis_url: str) -> None:
    client = async_client(RedisOptions(url=redis_url))
    try:
        await client.set("packing:k", "\u00e9t\u00e9", px=5000)
        assert await client.get("packing:k") == "\u00e9t\u00e9".encode()
        sha = await client.script_load("return ARGV[1]")  # "SCRIPT LOAD": a two-word name
        pipe = client.pipeline(transaction=False)
        pipe.execute_command("EVALSHA", sha, 0, 42)
        pipe.execute_command("GETDEL", "packing:k")
        pipe.execute_command("GET", "packing:k")
        assert await pipe.execute() == [b"42", "\u00e9t\u00e9".encode(), None]
    finally:
        await client.aclose()
