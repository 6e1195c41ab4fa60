"""Every adapter closes a socket with 4401 when its session expires — with and without a
RevocationWatch — and after ``max_lifetime`` (real servers on loopback, real Redis)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import django
import pytest
import redis.asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer
from django.conf import settings
from fastapi import Depends, FastAPI, WebSocket
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import WebSocketRoute
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.sync.server import ServerConnection as SyncConnection
from websockets.sync.server import serve as serve_sync
from websockets.typing import Origin

if not settings.configured:
    settings.configure(INSTALLED_APPS=["channels"], USE_TZ=True)
    django.setup()

from channels.generic.websocket import AsyncWebsocketConsumer

from tests.support.adapters import ORIGIN, PREFIX, TicketEnv, ticket_env
from tests.support.apps import asgi_echo, uvicorn_server
from tests.support.redisproc import free_port
from ticketd import BlockingTicketVerifier, Claims
from ticketd.integrations import websockets as ws_adapter
from ticketd.integrations import websockets_sync
from ticketd.integrations.aiohttp import accept_websocket
from ticketd.integrations.asgi import TicketMiddleware, ticket_subprotocol
from ticketd.integrations.channels import TicketAuthMiddlewareStack
from ticketd.integrations.starlette import install, require_ticket
from ticketd.lifetime import MAX_LIFETIME, SESSION_EXPIRED, ConnectionLifetime
from ticketd.liveness import BlockingRevocationWatch, RevocationWatch

pytestmark = pytest.mark.redis

Server = Callable[[TicketEnv, str, ConnectionLifetime, bool], AbstractAsyncContextManager[str]]


@asynccontextmanager
async def maybe_watch(env: TicketEnv, watched: bool) -> AsyncIterator[RevocationWatch | None]:
    if not watched:
        yield None
        return
    async with RevocationWatch(env.client, key_prefix=PREFIX) as watch:
        yield watch


@asynccontextmanager
async def websockets_server(
    env: TicketEnv, url: str, lifetime: ConnectionLifetime, watched: bool
) -> AsyncIterator[str]:
    async with maybe_watch(env, watched) as watch:

        async def echo(connection: ServerConnection) -> None:
            async for message in connection:
                await connection.send(message)

        hook = ws_adapter.ticket_auth(env.verifier, watch=watch, lifetime=lifetime)
        async with serve(echo, "127.0.0.1", 0, process_response=hook) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            yield f"ws://127.0.0.1:{port}/"


@asynccontextmanager
async def websockets_sync_server(
    env: TicketEnv, url: str, lifetime: ConnectionLifetime, watched: bool
) -> AsyncIterator[str]:
    watch = (
        BlockingRevocationWatch(
            lambda: redis.asyncio.Redis.from_url(url, socket_timeout=2), key_prefix=PREFIX
        )
        if watched
        else None
    )
    verifier = BlockingTicketVerifier.from_url(url, key_prefix=PREFIX, audience="chat")

    def echo(connection: SyncConnection) -> None:
        for message in connection:
            connection.send(message)

    port = free_port()
    hook = websockets_sync.ticket_auth(verifier, watch=watch, lifetime=lifetime)
    with serve_sync(echo, "127.0.0.1", port, process_response=hook) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"ws://127.0.0.1:{port}/"
        finally:
            server.shutdown()
            thread.join(timeout=10)
            if watch is not None:
                watch.close()
            verifier.close()


@asynccontextmanager
async def middleware_server(
    env: TicketEnv, url: str, lifetime: ConnectionLifetime, watched: bool
) -> AsyncIterator[str]:
    async with maybe_watch(env, watched) as watch:
        app = Starlette(
            routes=[WebSocketRoute("/ws", asgi_echo)],
            middleware=[
                Middleware(TicketMiddleware, verifier=env.verifier, watch=watch, lifetime=lifetime)
            ],
        )
        async with uvicorn_server(app) as base:
            yield base


@asynccontextmanager
async def fastapi_server(
    env: TicketEnv, url: str, lifetime: ConnectionLifetime, watched: bool
) -> AsyncIterator[str]:
    async with maybe_watch(env, watched) as watch:
        app = FastAPI()
        install(app)
        ticket = require_ticket(env.verifier, watch=watch, lifetime=lifetime)

        @app.websocket("/ws")
        async def endpoint(websocket: WebSocket, claims: Claims = Depends(ticket)) -> None:  # noqa: B008
            await asgi_echo(websocket)

        async with uvicorn_server(app) as base:
            yield base


class EchoConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
    async def connect(self) -> None:
        await self.accept(subprotocol=ticket_subprotocol(self.scope))

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        await self.send(text_data=text_data)


@asynccontextmanager
async def channels_server(
    env: TicketEnv, url: str, lifetime: ConnectionLifetime, watched: bool
) -> AsyncIterator[str]:
    async with maybe_watch(env, watched) as watch:
        app = TicketAuthMiddlewareStack(
            EchoConsumer.as_asgi(), env.verifier, watch=watch, lifetime=lifetime
        )
        async with uvicorn_server(app) as base:
            yield base


@asynccontextmanager
async def aiohttp_server(
    env: TicketEnv, url: str, lifetime: ConnectionLifetime, watched: bool
) -> AsyncIterator[str]:
    async with maybe_watch(env, watched) as watch:

        async def handler(request: web.Request) -> web.WebSocketResponse:
            _, ws = await accept_websocket(request, env.verifier, watch=watch, lifetime=lifetime)
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


SERVERS: dict[str, Server] = {
    "websockets": websockets_server,
    "websockets_sync": websockets_sync_server,
    "asgi_middleware": middleware_server,
    "fastapi_dependency": fastapi_server,
    "channels": channels_server,
    "aiohttp": aiohttp_server,
}


async def close_code(socket: ClientConnection, within: float = 10.0) -> int | None:
    """The close code the server sent, waiting at most ``within`` seconds for it."""
    async with asyncio.timeout(within):
        await socket.wait_closed()
    return socket.close_code


@pytest.mark.parametrize("watched", [False, True], ids=["no_watch", "watch"])
@pytest.mark.parametrize("adapter", list(SERVERS))
async def test_the_socket_closes_with_4401_when_the_session_expires(
    redis_url: str, adapter: str, watched: bool
) -> None:
    lifetime = ConnectionLifetime()
    async with (
        ticket_env(redis_url) as env,
        SERVERS[adapter](env, redis_url, lifetime, watched) as url,
    ):
        ending = await env.mint_ending("user-1", session_ends_in=1.0)
        lasting = await env.mint_ending("user-2", session_ends_in=600)
        socket = await connect(f"{url}?ticket={ending}", origin=Origin(ORIGIN))
        other = await connect(f"{url}?ticket={lasting}", origin=Origin(ORIGIN))
        await socket.send("ping")
        assert await socket.recv() == "ping"
        assert await close_code(socket) == 4401
        assert lifetime.closed == {SESSION_EXPIRED: 1}
        await other.send("still here")  # control: a session that lasts keeps its socket
        assert await other.recv() == "still here"
        await other.close()


@pytest.mark.parametrize("adapter", ["websockets", "asgi_middleware", "aiohttp"])
async def test_max_lifetime_closes_with_4401_while_the_session_lasts(
    redis_url: str, adapter: str
) -> None:
    lifetime = ConnectionLifetime(max_lifetime=0.5)
    server = SERVERS[adapter]
    async with ticket_env(redis_url) as env, server(env, redis_url, lifetime, False) as url:
        socket = await connect(f"{url}?ticket={await env.mint('user-1')}", origin=Origin(ORIGIN))
        assert await close_code(socket) == 4401
        assert lifetime.closed == {MAX_LIFETIME: 1}


async def test_the_watch_forgets_a_socket_the_session_closed(redis_url: str) -> None:
    async with ticket_env(redis_url) as env, RevocationWatch(env.client, key_prefix=PREFIX) as w:

        async def echo(connection: ServerConnection) -> None:
            async for message in connection:
                await connection.send(message)

        hook = ws_adapter.ticket_auth(env.verifier, watch=w)
        async with serve(echo, "127.0.0.1", 0, process_response=hook) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            ticket = await env.mint_ending("user-1", session_ends_in=0.5)
            socket = await connect(f"ws://127.0.0.1:{port}/?ticket={ticket}", origin=Origin(ORIGIN))
            assert len(w.connections) == 1
            assert await close_code(socket) == 4401
            for _ in range(500):  # the end of the connection is seen by its own task
                if not len(w.connections):
                    break
                await asyncio.sleep(0.01)
            assert len(w.connections) == 0


def test_channels_stack_passes_the_lifetime_on() -> None:
    lifetime = ConnectionLifetime(max_lifetime=60)
    stack = TicketAuthMiddlewareStack(asgi_echo, object(), lifetime=lifetime)  # type: ignore[arg-type]
    assert stack.lifetime is lifetime
