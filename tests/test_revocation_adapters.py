"""Every adapter with a RevocationWatch: a revoked ticket is refused (403) before 101, and a
revocation after the 101 closes the open socket with 4403 (real servers on loopback)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import redis.asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer
from fastapi import Depends, FastAPI, WebSocket
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import WebSocketRoute
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.server import ServerConnection as SyncConnection
from websockets.sync.server import serve as serve_sync
from websockets.typing import Origin

from tests.support.adapters import ORIGIN, PREFIX, TicketEnv, ticket_env
from tests.support.apps import asgi_echo, uvicorn_server
from tests.support.redisproc import free_port
from ticketd import BlockingTicketVerifier, Claims
from ticketd.integrations import websockets as ws_adapter
from ticketd.integrations import websockets_sync
from ticketd.integrations.aiohttp import accept_websocket
from ticketd.integrations.asgi import TicketMiddleware
from ticketd.integrations.channels import TicketAuthMiddlewareStack
from ticketd.integrations.starlette import install, require_ticket
from ticketd.liveness import BlockingRevocationWatch, RevocationWatch
from ticketd.revoker import Revoker

pytestmark = pytest.mark.redis

ServerFactory = Callable[[TicketEnv, Any], Any]


@asynccontextmanager
async def websockets_server(env: TicketEnv, url: str) -> AsyncIterator[str]:
    async with RevocationWatch(env.client, key_prefix=PREFIX) as watch:

        async def echo(connection: ServerConnection) -> None:
            async for message in connection:
                await connection.send(message)

        hook = ws_adapter.ticket_auth(env.verifier, watch=watch)
        async with serve(echo, "127.0.0.1", 0, process_response=hook) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            yield f"ws://127.0.0.1:{port}/"


@asynccontextmanager
async def websockets_sync_server(env: TicketEnv, url: str) -> AsyncIterator[str]:
    watch = BlockingRevocationWatch(
        lambda: redis.asyncio.Redis.from_url(url, socket_timeout=2), key_prefix=PREFIX
    )
    verifier = BlockingTicketVerifier.from_url(url, key_prefix=PREFIX, audience="chat")

    def echo(connection: SyncConnection) -> None:
        for message in connection:
            connection.send(message)

    port = free_port()
    hook = websockets_sync.ticket_auth(verifier, watch=watch)
    with serve_sync(echo, "127.0.0.1", port, process_response=hook) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"ws://127.0.0.1:{port}/"
        finally:
            server.shutdown()
            thread.join(timeout=10)
            watch.close()
            verifier.close()


@asynccontextmanager
async def middleware_server(env: TicketEnv, url: str) -> AsyncIterator[str]:
    async with RevocationWatch(env.client, key_prefix=PREFIX) as watch:
        app = Starlette(
            routes=[WebSocketRoute("/ws", asgi_echo)],
            middleware=[Middleware(TicketMiddleware, verifier=env.verifier, watch=watch)],
        )
        async with uvicorn_server(app) as base:
            yield base


@asynccontextmanager
async def fastapi_server(env: TicketEnv, url: str) -> AsyncIterator[str]:
    async with RevocationWatch(env.client, key_prefix=PREFIX) as watch:
        app = FastAPI()
        install(app)
        ticket = require_ticket(env.verifier, watch=watch)

        @app.websocket("/ws")
        async def endpoint(websocket: WebSocket, claims: Claims = Depends(ticket)) -> None:  # noqa: B008
            await asgi_echo(websocket)

        async with uvicorn_server(app) as base:
            yield base


@asynccontextmanager
async def aiohttp_server(env: TicketEnv, url: str) -> AsyncIterator[str]:
    async with RevocationWatch(env.client, key_prefix=PREFIX) as watch:

        async def handler(request: web.Request) -> web.WebSocketResponse:
            _, ws = await accept_websocket(request, env.verifier, watch=watch)
            async for message in ws:
                await ws.send_str(message.data)
            return ws

        app = web.Application()
        app.router.add_get("/ws", handler)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        try:
            yield f"ws://127.0.0.1:{server.port}/ws"
        finally:
            await server.close()


SERVERS = {
    "websockets": websockets_server,
    "websockets_sync": websockets_sync_server,
    "asgi_middleware": middleware_server,
    "fastapi_dependency": fastapi_server,
    "aiohttp": aiohttp_server,
}


@pytest.mark.parametrize("adapter", list(SERVERS))
async def test_revocation_refuses_then_closes(redis_url: str, adapter: str) -> None:
    async with ticket_env(redis_url) as env, SERVERS[adapter](env, redis_url) as url:
        revoker = Revoker(env.client, key_prefix=PREFIX, ttl=3600)
        stale = await env.mint("user-1")
        live = await env.mint("user-2")
        bystander = await env.mint("user-3")
        await revoker.revoke("user-1")
        with pytest.raises(InvalidStatus) as refused:
            await connect(f"{url}?ticket={stale}", origin=Origin(ORIGIN))
        assert refused.value.response.status_code == 403

        socket = await connect(f"{url}?ticket={live}", origin=Origin(ORIGIN))
        other = await connect(f"{url}?ticket={bystander}", origin=Origin(ORIGIN))
        await socket.send("ping")
        assert await socket.recv() == "ping"
        await revoker.revoke("user-2")
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(5):
                await socket.recv()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 4403
        await other.send("still here")  # control: another subject's socket stays open
        assert await other.recv() == "still here"
        await other.close()


def test_channels_stack_passes_the_watch_on() -> None:
    watch = RevocationWatch(object())
    stack = TicketAuthMiddlewareStack(asgi_echo, object(), watch=watch)  # type: ignore[arg-type]
    assert stack.watch is watch
