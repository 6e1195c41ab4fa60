"""Every adapter with a RevocationWatch: a revoked ticket is refused (403) before 101, and a
revocation after the 101 closes the open socket with 4403 (real servers on loopback)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Origin

from tests.support.adapter_servers import SERVERS as ADAPTER_SERVERS
from tests.support.adapter_servers import Server
from tests.support.adapters import ORIGIN, PREFIX, TicketEnv, ticket_env
from tests.support.apps import asgi_echo
from ticketd.integrations.channels import TicketAuthMiddlewareStack
from ticketd.liveness import RevocationWatch
from ticketd.revoker import Revoker

pytestmark = pytest.mark.redis


def _watched(server: Server) -> Callable[[TicketEnv, str], AbstractAsyncContextManager[str]]:
    def watched(env: TicketEnv, url: str) -> AbstractAsyncContextManager[str]:
        return server(env, url, None, True)

    return watched


# Every adapter's echo server, with a RevocationWatch and the default lifetime.
SERVERS = {name: _watched(server) for name, server in ADAPTER_SERVERS.items()}


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
