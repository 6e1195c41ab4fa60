"""ticketd.integrations.aiohttp: a real aiohttp server and client, real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.support.adapters import ORIGIN, OTHER_ORIGIN, ticket_env
from tests.support.apps import aiohttp_app
from tests.support.redisproc import RedisServer
from ticketd import TicketVerifier

TIMEOUT = aiohttp.ClientWSTimeout(ws_receive=5.0)


@asynccontextmanager
async def served(verifier: TicketVerifier) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    async with (
        TestServer(aiohttp_app(verifier), host="127.0.0.1") as server,
        aiohttp.ClientSession() as session,
    ):
        yield session, str(server.make_url("/ws"))


async def status_of(
    session: aiohttp.ClientSession,
    url: str,
    *,
    origin: str = ORIGIN,
    protocols: Sequence[str] = (),
) -> int:
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        async with session.ws_connect(url, origin=origin, protocols=protocols, timeout=TIMEOUT):
            pass
    return caught.value.status


def offer(ticket: str) -> tuple[str, str]:
    return ("ticketd.v1", f"ticket.{ticket}")


@pytest.mark.parametrize("transport", ["query", "subprotocol"])
async def test_both_transports(redis_url: str, transport: str) -> None:
    async with ticket_env(redis_url) as env, served(env.verifier) as (session, url):
        ticket = await env.mint("erin")
        target = f"{url}?ticket={ticket}" if transport == "query" else url
        protocols = offer(ticket) if transport == "subprotocol" else ()
        async with session.ws_connect(
            target, origin=ORIGIN, protocols=protocols, timeout=TIMEOUT
        ) as ws:
            assert await ws.receive_json() == {"subject": "erin"}
            assert ws.protocol == ("ticketd.v1" if transport == "subprotocol" else None)
        assert not await env.stored(ticket)


async def test_refusals(redis_url: str) -> None:
    async with ticket_env(redis_url) as env, served(env.verifier) as (session, url):
        assert await status_of(session, url) == 401
        ticket = await env.mint()
        assert await status_of(session, f"{url}?ticket={ticket}", protocols=offer(ticket)) == 400
        assert await env.stored(ticket)

        async with session.get(f"{url}?ticket={ticket}", headers={"Origin": ORIGIN}) as response:
            assert response.status == 400  # a plain GET: refused, ticket left alone
            assert await response.text() == "ticket rejected\n"
        assert await env.stored(ticket)

        assert await status_of(session, f"{url}?ticket={ticket}", origin=OTHER_ORIGIN) == 403
        assert await status_of(session, f"{url}?ticket={ticket}") == 401


async def test_redis_down_is_503(private_redis: RedisServer) -> None:
    async with ticket_env(private_redis.url) as env, served(env.verifier) as (session, url):
        ticket = await env.mint()
        private_redis.stop()
        async with session.get(
            f"{url}?ticket={ticket}",
            headers={
                "Origin": ORIGIN,
                "Upgrade": "websocket",
                "Connection": "Upgrade",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            },
        ) as response:
            assert response.status == 503
            assert response.headers["Retry-After"] == "1"
            assert await response.text() == "ticket rejected\n"
