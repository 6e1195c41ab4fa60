"""Every adapter's echo server on loopback, for the tests that close live sockets.

``SERVERS[name](env, url, lifetime, watched)`` serves an echo WebSocket protected by
that adapter, with the ticket env's verifier, a :class:`~ticketd.lifetime.ConnectionLifetime`
(or ``None``: the adapter's default) and a :class:`~ticketd.liveness.RevocationWatch`
when ``watched``; it yields the socket's URL. Used by the lifetime (4401) and the
revocation (4403) adapter tests.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import django
import redis.asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer
from django.conf import settings
from fastapi import Depends, FastAPI, WebSocket
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import WebSocketRoute
from websockets.asyncio.server import ServerConnection, serve
from websockets.sync.server import ServerConnection as SyncConnection
from websockets.sync.server import serve as serve_sync

if not settings.configured:
    settings.configure(INSTALLED_APPS=["channels"], USE_TZ=True)
    django.setup()

from channels.generic.websocket import AsyncWebsocketConsumer

from tests.support.adapters import PREFIX, TicketEnv
from tests.support.apps import asgi_echo, uvicorn_server
from tests.support.redisproc import free_port
from ticketd import BlockingTicketVerifier, Claims
from ticketd.integrations import websockets as ws_adapter
from ticketd.integrations import websockets_sync
from ticketd.integrations.aiohttp import accept_websocket
from ticketd.integrations.asgi import TicketMiddleware, ticket_subprotocol
from ticketd.integrations.channels import TicketAuthMiddlewareStack
from ticketd.integrations.starlette import install, require_ticket
from ticketd.lifetime import ConnectionLifetime
from ticketd.liveness import BlockingRevocationWatch, RevocationWatch

__all__ = ["SERVERS", "Server"]

Server = Callable[
    [TicketEnv, str, ConnectionLifetime | None, bool], AbstractAsyncContextManager[str]
]


@asynccontextmanager
async def _maybe_watch(env: TicketEnv, watched: bool) -> AsyncIterator[RevocationWatch | None]:
    if not watched:
        yield None
        return
    async with RevocationWatch(env.client, key_prefix=PREFIX) as watch:
        yield watch


@asynccontextmanager
async def websockets_server(
    env: TicketEnv, url: str, lifetime: ConnectionLifetime | None, watched: bool
) -> AsyncIterator[str]:
    async with _maybe_watch(env, watched) as watch:

        async def echo(connection: ServerConnection) -> None:
            async for message in connection:
                await connection.send(message)

        hook = ws_adapter.ticket_auth(env.verifier, watch=watch, lifetime=lifetime)
        async with serve(echo, "127.0.0.1", 0, process_response=hook) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            yield f"ws://127.0.0.1:{port}/"


@asynccontextmanager
async def websockets_sync_server(
    env: TicketEnv, url: str, lifetime: ConnectionLifetime | None, watched: bool
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
    env: TicketEnv, url: str, lifetime: ConnectionLifetime | None, watched: bool
) -> AsyncIterator[str]:
    async with _maybe_watch(env, watched) as watch:
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
    env: TicketEnv, url: str, lifetime: ConnectionLifetime | None, watched: bool
) -> AsyncIterator[str]:
    async with _maybe_watch(env, watched) as watch:
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
    env: TicketEnv, url: str, lifetime: ConnectionLifetime | None, watched: bool
) -> AsyncIterator[str]:
    async with _maybe_watch(env, watched) as watch:
        app = TicketAuthMiddlewareStack(
            EchoConsumer.as_asgi(), env.verifier, watch=watch, lifetime=lifetime
        )
        async with uvicorn_server(app) as base:
            yield base


@asynccontextmanager
async def aiohttp_server(
    env: TicketEnv, url: str, lifetime: ConnectionLifetime | None, watched: bool
) -> AsyncIterator[str]:
    async with _maybe_watch(env, watched) as watch:

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
