from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import fakeredis
import httpx
import pytest
import redis
import redis.asyncio

from tests.support.redisproc import RedisServer
from tests.support.service_support import make_settings, running_service


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server shared by the session (flushed before each test using it)."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    with redis_server.client() as client:
        client.flushall()
    return redis_server.url


@pytest.fixture
def redis_sync(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A redis-server for this test alone: kill it, pause it, fill it."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(params=["fakeredis", "redis-server"])
async def any_async_redis(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """The same test against the embedded store (fakeredis) and a real redis-server."""
    client: Any
    if request.param == "fakeredis":
        client = fakeredis.FakeAsyncRedis()
    else:
        client = redis.asyncio.Redis.from_url(request.getfixturevalue("redis_url"))
    yield client
    await client.aclose()


@pytest.fixture(scope="module")
def service(redis_server: RedisServer) -> Iterator[str]:
    """The HTTP service with the default test settings, on the shared redis-server."""
    with running_service(make_settings(redis_server.url)) as base:
        yield base


@pytest.fixture
def http(service: str, redis_url: str) -> Iterator[httpx.Client]:
    """A client for ``service``; requesting ``redis_url`` flushes Redis before each test."""
    with httpx.Client(base_url=service, timeout=10) as client:
        yield client
