"""Small WebSocket apps behind each adapter, and a uvicorn server on this event loop."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from aiohttp import web
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.server import ServerConnection

from ticketd import TicketVerifier
from ticketd.integrations.aiohttp import CLAIMS_KEY, PROTOCOLS, check_ticket
from ticketd.integrations.asgi import (
    STATE_KEY,
    TicketMiddleware,
    claims_from_scope,
    ticket_subprotocol,
)
from ticketd.integrations.websockets import claims_of

STARTUP_TIMEOUT = 5.0


def aiohttp_app(verifier: TicketVerifier) -> web.Application:
    async def chat(request: web.Request) -> web.WebSocketResponse:
        claims = await check_ticket(request, verifier)
        assert request[CLAIMS_KEY] is claims
        ws = web.WebSocketResponse(protocols=PROTOCOLS)
        await ws.prepare(request)
        await ws.send_json({"subject": claims.subject})
        await ws.close()
        return ws

    app = web.Application()
    app.router.add_get("/ws", chat)
    return app


async def chat(websocket: WebSocket) -> None:
    await websocket.accept(subprotocol=ticket_subprotocol(websocket.scope))
    claims = claims_from_scope(websocket.scope)
    assert getattr(websocket.state, STATE_KEY) is claims
    await websocket.send_json(
        {
            "subject": claims.subject,
            "query": websocket.scope["query_string"].decode(),
            "offered": websocket.scope["subprotocols"],
        }
    )
    await websocket.close()


async def asgi_echo(websocket: WebSocket) -> None:
    """Echo text frames until the client (or ticketd) closes the socket."""
    await websocket.accept(subprotocol=ticket_subprotocol(websocket.scope))
    try:
        while True:
            await websocket.send_text(await websocket.receive_text())
    except WebSocketDisconnect:
        pass


def starlette_app(verifier: TicketVerifier, **options: Any) -> Starlette:
    return Starlette(
        routes=[WebSocketRoute("/ws", chat)],
        middleware=[Middleware(TicketMiddleware, verifier=verifier, **options)],
    )


@asynccontextmanager
async def uvicorn_server(app: Any, **options: Any) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port, as a task of this event loop."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    options.setdefault("log_config", None)
    config = uvicorn.Config(app, lifespan="off", **options)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(STARTUP_TIMEOUT):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        yield f"ws://127.0.0.1:{port}/ws"
    finally:
        server.should_exit = True
        async with asyncio.timeout(STARTUP_TIMEOUT):
            await task
        sock.close()


async def handler(connection: ServerConnection) -> None:
    claims = claims_of(connection)
    await connection.send(json.dumps({"subject": claims.subject, "sub": connection.subprotocol}))
