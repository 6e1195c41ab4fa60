from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import fakeredis
import httpx
import pytest
import redis

import ticketd.connection
from tests.support.redisproc import RedisServer
from tests.support.service_support import make_settings, running_service
from tests.support.twins import BACKENDS, KINDS, Kind, Stores
from ticketd import BlockingTicketStore, RedisOptions, TicketStore


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


@pytest.fixture(params=KINDS)
def verifier_kind(request: pytest.FixtureRequest) -> Kind:
    """The twin under test: ``async`` (TicketVerifier/TicketStore) or ``blocking``."""
    kind: Kind = request.param
    return kind


@pytest.fixture(params=BACKENDS)
async def stores(request: pytest.FixtureRequest) -> AsyncIterator[Stores]:
    """The one store fixture: the same data behind an asyncio and a blocking store, on
    the embedded store (fakeredis) and on a real redis-server. ``stores.kind`` follows
    ``verifier_kind`` when the test asks for it."""
    if request.param == "fakeredis":
        server = fakeredis.FakeServer()
        async_client: Any = fakeredis.FakeAsyncRedis(server=server)
        blocking_client: Any = fakeredis.FakeRedis(server=server)
    else:
        url = request.getfixturevalue("redis_url")
        async_client = ticketd.connection.async_client(RedisOptions(url=url))
        blocking_client = ticketd.connection.sync_client(RedisOptions(url=url))
    kind: Kind = (
        request.getfixturevalue("verifier_kind")
        if "verifier_kind" in request.fixturenames
        else "async"
    )
    both = Stores(TicketStore(async_client), BlockingTicketStore(blocking_client), kind=kind)
    yield both
    await both.aclose()


@pytest.fixture
def store(stores: Stores) -> TicketStore:
    """The asyncio store of :func:`stores` (fakeredis and redis-server)."""
    return stores.async_store


@pytest.fixture
def any_async_redis(stores: Stores) -> Any:
    """The asyncio client of :func:`stores` (fakeredis and redis-server)."""
    return stores.async_store.client


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
