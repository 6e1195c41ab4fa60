"""``allowed_hosts=`` on the adapters: ASGI middleware and dependency under uvicorn, websockets.

Raw handshakes, because a WebSocket client writes its own ``Host`` header.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from fastapi import Depends, FastAPI, WebSocket
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import WebSocketRoute
from websockets.asyncio.server import serve

from tests.support.adapters import ORIGIN, TicketEnv, ticket_env
from tests.support.apps import chat, handler, uvicorn_server
from ticketd import Claims, TicketVerifier
from ticketd.hosts import HostAllowlist
from ticketd.integrations.aiohttp import PROTOCOLS, check_ticket
from ticketd.integrations.asgi import TicketMiddleware, ticket_subprotocol
from ticketd.integrations.starlette import install, require_ticket
from ticketd.integrations.websockets import select_subprotocol, ticket_auth

TIMEOUT = 5.0
ALLOWED = ["rt.example.com", "127.0.0.1:*"]


def middleware_app(verifier: TicketVerifier) -> Starlette:
    return Starlette(
        routes=[WebSocketRoute("/ws", chat)],
        middleware=[Middleware(TicketMiddleware, verifier=verifier, allowed_hosts=ALLOWED)],
    )


def dependency_app(verifier: TicketVerifier) -> FastAPI:
    app = FastAPI()
    install(app)
    ticket = require_ticket(verifier, allowed_hosts=HostAllowlist(ALLOWED))

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket, claims: Claims = Depends(ticket)) -> None:  # noqa: B008
        await websocket.accept(subprotocol=ticket_subprotocol(websocket.scope))
        await websocket.close()

    return app


@asynccontextmanager
async def websockets_server(verifier: TicketVerifier) -> AsyncIterator[str]:
    async with serve(
        handler,
        "127.0.0.1",
        0,
        process_response=ticket_auth(verifier, allowed_hosts=ALLOWED),
        select_subprotocol=select_subprotocol,
    ) as server:
        yield f"ws://127.0.0.1:{next(iter(server.sockets)).getsockname()[1]}/ws"


@asynccontextmanager
async def aiohttp_server(verifier: TicketVerifier) -> AsyncIterator[str]:
    hosts = HostAllowlist(ALLOWED)

    async def chat(request: web.Request) -> web.WebSocketResponse:
        await check_ticket(request, verifier, allowed_hosts=hosts)
        ws = web.WebSocketResponse(protocols=PROTOCOLS)
        await ws.prepare(request)
        await ws.close()
        return ws

    app = web.Application()
    app.router.add_get("/ws", chat)
    async with TestServer(app, host="127.0.0.1") as server:
        yield str(server.make_url("/ws"))


SERVERS: dict[str, Callable[[TicketVerifier], Any]] = {
    "asgi middleware": lambda v: uvicorn_server(middleware_app(v)),
    "starlette dependency": lambda v: uvicorn_server(dependency_app(v)),
    "websockets": websockets_server,
    "aiohttp": aiohttp_server,
}


async def handshake(url: str, ticket: str, hosts: list[str]) -> bytes:
    """A raw handshake with exactly these Host headers; the status line of the answer."""
    port = int(url.rsplit(":", 1)[1].removesuffix("/ws"))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = "".join(f"Host: {host}\r\n" for host in hosts)
    writer.write(
        f"GET /ws?ticket={ticket} HTTP/1.1\r\n{lines}Upgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: {ORIGIN}\r\n\r\n".encode()
    )
    async with asyncio.timeout(TIMEOUT):
        status = await reader.readline()
    writer.close()
    await writer.wait_closed()
    return status


@asynccontextmanager
async def running(kind: str, redis_url: str) -> AsyncIterator[tuple[TicketEnv, str]]:
    async with ticket_env(redis_url) as env, SERVERS[kind](env.verifier) as url:
        yield env, url


@pytest.mark.parametrize("kind", list(SERVERS))
async def test_unlisted_host_is_421_and_the_ticket_survives(
    redis_url: str, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "ticketd.integrations")
    async with running(kind, redis_url) as (env, url):
        ticket = await env.mint()
        for hosts in (["attacker.example"], ["rt.example.com:8080"], []):
            status = await handshake(url, ticket, hosts)
            if not hosts and kind != "websockets":
                assert status.split(b" ")[1] in (b"400", b"421")  # some servers want a Host
            else:
                assert status.startswith(b"HTTP/1.1 421"), (hosts, status)
            assert await env.stored(ticket)
        assert "websocket handshake refused code=host_not_allowed" in caplog.text
        assert "attacker.example" not in caplog.text
        assert (await handshake(url, ticket, ["rt.example.com"])).startswith(b"HTTP/1.1 101")
        assert not await env.stored(ticket)


@pytest.mark.parametrize("kind", ["websockets", "asgi middleware", "aiohttp"])
async def test_two_host_headers_are_400_and_the_ticket_survives(redis_url: str, kind: str) -> None:
    async with running(kind, redis_url) as (env, url):
        ticket = await env.mint()
        status = await handshake(url, ticket, ["rt.example.com", "attacker.example"])
        assert status.split(b" ")[1] == b"400", status  # the server's, or the adapter's
        assert await env.stored(ticket)
