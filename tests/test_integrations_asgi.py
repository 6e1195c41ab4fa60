"""ticketd.integrations.asgi and .starlette: Starlette and FastAPI apps under a real uvicorn."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI, WebSocket
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin, Subprotocol

from tests.support.adapters import ORIGIN, OTHER_ORIGIN, ticket_env
from tests.support.apps import starlette_app, uvicorn_server
from tests.support.redisproc import RedisServer
from ticketd import Claims, TicketVerifier
from ticketd.integrations.asgi import (
    TicketMiddleware,
    ticket_subprotocol,
)
from ticketd.integrations.starlette import install, require_ticket

TIMEOUT = 5.0

# uvicorn's websockets-sansio protocol (the default) logs this after every denial
# response although the client got it: https://github.com/Kludex/uvicorn/pull/3138
UVICORN_SANSIO_DENIAL_ERROR = "ASGI callable returned without completing handshake."


def fastapi_app(verifier: TicketVerifier, *, handler: bool = True) -> FastAPI:
    app = FastAPI()
    if handler:
        install(app)
    ticket = require_ticket(verifier)

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket, claims: Claims = Depends(ticket)) -> None:  # noqa: B008
        await websocket.accept(subprotocol=ticket_subprotocol(websocket.scope))
        await websocket.send_json({"subject": claims.subject})
        await websocket.close()

    return app


def offer(ticket: str) -> list[Subprotocol]:
    return [Subprotocol("ticketd.v1"), Subprotocol(f"ticket.{ticket}")]


async def status_of(
    url: str, *, origin: str = ORIGIN, subprotocols: Sequence[Subprotocol] | None = None
) -> int:
    with pytest.raises(InvalidStatus) as caught:
        async with connect(
            url, origin=Origin(origin), subprotocols=subprotocols, open_timeout=TIMEOUT
        ):
            pass
    assert b"ticket rejected" in caught.value.response.body or not caught.value.response.body
    return caught.value.response.status_code


@pytest.mark.parametrize("transport", ["query", "subprotocol"])
async def test_starlette_both_transports(redis_url: str, transport: str) -> None:
    async with ticket_env(redis_url) as env, uvicorn_server(starlette_app(env.verifier)) as url:
        ticket = await env.mint("carol")
        query = f"?a=1&ticket={ticket}&b=%2F" if transport == "query" else "?a=1&b=%2F"
        subprotocols = offer(ticket) if transport == "subprotocol" else None
        async with connect(
            url + query, origin=Origin(ORIGIN), subprotocols=subprotocols, open_timeout=TIMEOUT
        ) as ws:
            data = await ws.recv()
            assert ws.response is not None
            protocols = ws.response.headers.get_all("Sec-WebSocket-Protocol")
        assert protocols == (["ticketd.v1"] if transport == "subprotocol" else [])
        assert ticket not in data  # scrubbed from the scope the app sees
        assert '"subject":"carol"' in data
        assert '"query":"a=1&b=%2F"' in data
        assert not await env.stored(ticket)


async def test_starlette_refusals(redis_url: str) -> None:
    async with ticket_env(redis_url) as env, uvicorn_server(starlette_app(env.verifier)) as url:
        assert await status_of(url) == 401
        ticket = await env.mint()
        assert await status_of(f"{url}?ticket={ticket}", subprotocols=offer(ticket)) == 400
        assert await env.stored(ticket)  # duplicate: nothing consumed

        async with httpx.AsyncClient(timeout=TIMEOUT) as client:  # not an upgrade
            response = await client.get(url.replace("ws:", "http:") + f"?ticket={ticket}")
        assert response.status_code == 404  # a plain GET never reaches the middleware
        assert await env.stored(ticket)

        assert await status_of(f"{url}?ticket={ticket}", origin=OTHER_ORIGIN) == 403
        assert await status_of(f"{url}?ticket={ticket}") == 401  # burned by the 403


async def test_upgrade_without_a_key_is_400_and_leaves_the_ticket(redis_url: str) -> None:
    async with ticket_env(redis_url) as env, uvicorn_server(starlette_app(env.verifier)) as url:
        ticket = await env.mint()
        reader, writer = await asyncio.open_connection("127.0.0.1", int(url.split(":")[2][:-3]))
        writer.write(
            f"GET /ws?ticket={ticket} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nOrigin: {ORIGIN}\r\n\r\n".encode()
        )
        async with asyncio.timeout(TIMEOUT):
            status_line = await reader.readline()
        writer.close()
        await writer.wait_closed()
        assert not status_line.startswith(b"HTTP/1.1 101")
        assert await env.stored(ticket)


async def test_without_denial_extension_the_middleware_closes(redis_url: str) -> None:
    async with ticket_env(redis_url) as env:
        app = TicketMiddleware(starlette_app(env.verifier), verifier=env.verifier)
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "websocket.connect"}

        async def send(message: Any) -> None:
            sent.append(message)

        scope = {"type": "websocket", "path": "/ws", "query_string": b"", "headers": []}
        await app(scope, receive, send)
        assert sent == [{"type": "websocket.close", "code": 1008}]


async def test_redis_down_is_503(private_redis: RedisServer) -> None:
    async with (
        ticket_env(private_redis.url) as env,
        uvicorn_server(starlette_app(env.verifier)) as url,
    ):
        ticket = await env.mint()
        private_redis.stop()
        assert await status_of(f"{url}?ticket={ticket}") == 503


@pytest.mark.parametrize("transport", ["query", "subprotocol"])
async def test_fastapi_dependency(redis_url: str, transport: str) -> None:
    async with ticket_env(redis_url) as env, uvicorn_server(fastapi_app(env.verifier)) as url:
        ticket = await env.mint("dave")
        target = f"{url}?ticket={ticket}" if transport == "query" else url
        subprotocols = offer(ticket) if transport == "subprotocol" else None
        async with connect(
            target, origin=Origin(ORIGIN), subprotocols=subprotocols, open_timeout=TIMEOUT
        ) as ws:
            assert await ws.recv() == '{"subject":"dave"}'
            assert ws.subprotocol == ("ticketd.v1" if transport == "subprotocol" else None)
        assert await status_of(target, subprotocols=subprotocols) == 401  # reused


async def test_fastapi_dependency_refusals(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with ticket_env(redis_url) as env, uvicorn_server(fastapi_app(env.verifier)) as url:
        assert await status_of(url) == 401
        ticket = await env.mint()
        assert await status_of(f"{url}?ticket={ticket}&ticket={ticket}") == 400
        assert await env.stored(ticket)
        assert await status_of(f"{url}?ticket={ticket}", origin=OTHER_ORIGIN) == 403
        assert await status_of(f"{url}?ticket={ticket}") == 401
    assert not [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR and r.getMessage() != UVICORN_SANSIO_DENIAL_ERROR
    ]


async def test_fastapi_dependency_without_the_handler_still_refuses(redis_url: str) -> None:
    async with (
        ticket_env(redis_url) as env,
        uvicorn_server(fastapi_app(env.verifier, handler=False)) as url,
    ):
        assert await status_of(url) == 403  # a close before accept
