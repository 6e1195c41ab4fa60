"""``check_revoked``: concurrent state reads share one pipeline, each keeps its own answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio

from ticketd.exceptions import StoreOperation, StoreUnavailable
from ticketd.revocation import Revocation, Target, state_value, subject_id
from ticketd.revoker import check_revoked

pytestmark = pytest.mark.redis

PREFIX = "ticketd:"


class CountingClient:
    """A redis-py asyncio client counting pipelines and direct commands."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.pipelines = 0
        self.direct = 0

    def pipeline(self, *args: Any, **kwargs: Any) -> Any:
        self.pipelines += 1
        return self.client.pipeline(*args, **kwargs)

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        self.direct += 1
        return await self.client.execute_command(*args, **options)


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Any]:
    client = redis.asyncio.Redis.from_url(redis_url)
    await client.flushdb()
    yield client
    await client.aclose()


def target(subject: str) -> Target:
    return Target(subject=subject_id(subject), session=None, auth_at_ms=1000)


async def test_concurrent_checks_share_one_pipeline(client: Any) -> None:
    revoked = Revocation.of("user-3", at_ms=2000)
    await client.set(revoked.state_key(PREFIX), state_value(revoked))
    counting = CountingClient(client)
    subjects = [f"user-{n}" for n in range(10)]
    answers = await asyncio.gather(
        *(check_revoked(counting, PREFIX, target(s), deadline=1.0) for s in subjects)
    )
    assert answers == [s == "user-3" for s in subjects]
    assert (counting.pipelines, counting.direct) == (1, 0)
    # The next loop iteration's checks go out in a pipeline of their own.
    assert await check_revoked(counting, PREFIX, target("user-3"), deadline=1.0)
    assert counting.pipelines == 2


async def test_an_unreachable_redis_is_a_store_failure() -> None:
    unreachable = redis.asyncio.Redis(port=1, socket_connect_timeout=0.2)
    with pytest.raises(StoreUnavailable) as raised:
        await check_revoked(unreachable, PREFIX, target("user-y"), deadline=1.0)
    assert raised.value.operation is StoreOperation.REVOCATION_CHECK
    await unreachable.aclose()
