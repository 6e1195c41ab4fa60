"""Every adapter closes a socket with 4401 when its session expires — with and without a
RevocationWatch — and after ``max_lifetime`` (real servers on loopback, real Redis)."""

from __future__ import annotations

import asyncio

import django
import pytest
from django.conf import settings
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.typing import Origin

if not settings.configured:
    settings.configure(INSTALLED_APPS=["channels"], USE_TZ=True)
    django.setup()


from tests.support.adapter_servers import SERVERS
from tests.support.adapters import ORIGIN, PREFIX, ticket_env
from tests.support.apps import asgi_echo
from ticketd.integrations import websockets as ws_adapter
from ticketd.integrations.channels import TicketAuthMiddlewareStack
from ticketd.lifetime import MAX_LIFETIME, SESSION_EXPIRED, ConnectionLifetime
from ticketd.liveness import RevocationWatch

pytestmark = pytest.mark.redis


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
