"""ticketd.integrations.websockets(_sync): real websockets servers, real clients, real Redis."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager

import httpx
import pytest
import redis
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as sync_connect
from websockets.sync.server import ServerConnection as SyncServerConnection
from websockets.sync.server import serve as sync_serve
from websockets.typing import Origin, Subprotocol

from tests.support.adapters import AUDIENCE, ORIGIN, OTHER_ORIGIN, PREFIX, ticket_env
from tests.support.apps import handler
from tests.support.redisproc import RedisServer
from ticketd import BlockingTicketStore, BlockingTicketVerifier, TicketVerifier
from ticketd.integrations.websockets import claims_of, select_subprotocol, ticket_auth
from ticketd.integrations.websockets_sync import ticket_auth as sync_ticket_auth

TIMEOUT = 5.0


@asynccontextmanager
async def server(verifier: TicketVerifier) -> AsyncIterator[str]:
    async with serve(
        handler,
        "127.0.0.1",
        0,
        process_request=ticket_auth(verifier),
        select_subprotocol=select_subprotocol,
    ) as ws_server:
        port = next(iter(ws_server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}/ws"


def offer(ticket: str) -> list[Subprotocol]:
    return [Subprotocol("ticketd.v1"), Subprotocol(f"ticket.{ticket}")]


async def refused(
    url: str, *, origin: str | None = ORIGIN, subprotocols: Sequence[Subprotocol] | None = None
) -> int:
    """Open a connection that must be refused; return the HTTP status."""
    with pytest.raises(InvalidStatus) as caught:
        async with connect(
            url,
            origin=Origin(origin) if origin else None,
            subprotocols=subprotocols,
            open_timeout=TIMEOUT,
        ):
            pass
    response = caught.value.response
    assert response.body == b"ticket rejected\n"
    return response.status_code


@pytest.mark.parametrize("transport", ["query", "subprotocol"])
async def test_both_transports_reach_the_handler(redis_url: str, transport: str) -> None:
    async with ticket_env(redis_url) as env, server(env.verifier) as url:
        ticket = await env.mint("alice")
        if transport == "query":
            target, subprotocols = f"{url}?ticket={ticket}", None
        else:
            target, subprotocols = url, offer(ticket)
        async with connect(
            target, origin=Origin(ORIGIN), subprotocols=subprotocols, open_timeout=TIMEOUT
        ) as ws:
            assert json.loads(await ws.recv(decode=True)) == {
                "subject": "alice",
                "sub": "ticketd.v1" if transport == "subprotocol" else None,
            }
            assert ws.response is not None
            protocols = ws.response.headers.get_all("Sec-WebSocket-Protocol")
        if transport == "subprotocol":
            assert protocols == ["ticketd.v1"]
        else:
            assert protocols == []
        assert not await env.stored(ticket)


async def test_missing_and_reused_tickets_are_401(redis_url: str) -> None:
    async with ticket_env(redis_url) as env, server(env.verifier) as url:
        assert await refused(url) == 401
        ticket = await env.mint()
        async with connect(f"{url}?ticket={ticket}", origin=Origin(ORIGIN)):
            pass
        assert await refused(f"{url}?ticket={ticket}") == 401
        assert await refused(url, subprotocols=offer(ticket)) == 401


async def test_wrong_origin_is_403_and_burns_the_ticket(redis_url: str) -> None:
    async with ticket_env(redis_url) as env, server(env.verifier) as url:
        ticket = await env.mint()
        assert await refused(f"{url}?ticket={ticket}", origin=OTHER_ORIGIN) == 403
        assert await refused(f"{url}?ticket={ticket}", origin=ORIGIN) == 401


async def test_ticket_twice_is_400_and_nothing_is_consumed(redis_url: str) -> None:
    async with ticket_env(redis_url) as env, server(env.verifier) as url:
        ticket = await env.mint()
        assert await refused(f"{url}?ticket={ticket}", subprotocols=offer(ticket)) == 400
        assert await refused(f"{url}?ticket={ticket}&ticket={ticket}") == 400
        assert await env.stored(ticket)


async def test_plain_get_is_refused_and_leaves_the_ticket(redis_url: str) -> None:
    async with ticket_env(redis_url) as env, server(env.verifier) as url:
        ticket = await env.mint()
        http_url = url.replace("ws://", "http://") + f"?ticket={ticket}"
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            response = await client.get(http_url, headers={"Origin": ORIGIN})
        assert response.status_code == 400
        assert ticket not in response.text
        assert await env.stored(ticket)
        async with connect(f"{url}?ticket={ticket}", origin=Origin(ORIGIN)) as ws:
            assert json.loads(await ws.recv())["subject"] == "u1"


async def test_server_without_the_selector_does_not_burn_subprotocol_tickets(
    redis_url: str,
) -> None:
    async with ticket_env(redis_url) as env:
        ticket = await env.mint()
        async with serve(handler, "127.0.0.1", 0, process_request=ticket_auth(env.verifier)) as s:
            url = f"ws://127.0.0.1:{next(iter(s.sockets)).getsockname()[1]}/"
            with pytest.raises(InvalidStatus) as caught:
                async with connect(url, origin=Origin(ORIGIN), subprotocols=offer(ticket)):
                    pass
        assert caught.value.response.status_code == 500
        assert await env.stored(ticket)


async def test_handshake_websockets_will_refuse_does_not_burn_the_ticket(
    redis_url: str,
) -> None:
    # subprotocols= without the selector: a query-ticket client offering none gets 400
    # from websockets itself, after the hook; the hook must leave the ticket alone.
    async with ticket_env(redis_url) as env:
        ticket = await env.mint()
        async with serve(
            handler,
            "127.0.0.1",
            0,
            process_request=ticket_auth(env.verifier),
            subprotocols=[Subprotocol("ticketd.v1")],
        ) as s:
            url = f"ws://127.0.0.1:{next(iter(s.sockets)).getsockname()[1]}/?ticket={ticket}"
            with pytest.raises(InvalidStatus) as caught:
                async with connect(url, origin=Origin(ORIGIN)):
                    pass
        assert caught.value.response.status_code == 400
        assert await env.stored(ticket)


async def test_redis_down_is_503_never_101(private_redis: RedisServer) -> None:
    async with ticket_env(private_redis.url) as env, server(env.verifier) as url:
        ticket = await env.mint()
        private_redis.stop()
        with pytest.raises(InvalidStatus) as caught:
            async with connect(f"{url}?ticket={ticket}", origin=Origin(ORIGIN), open_timeout=10):
                pass
        assert caught.value.response.status_code == 503
        assert caught.value.response.headers["Retry-After"] == "1"


# --- websockets.sync -------------------------------------------------------------------


def sync_handler(connection: SyncServerConnection) -> None:
    claims = claims_of(connection)
    connection.send(json.dumps({"subject": claims.subject, "sub": connection.subprotocol}))


@contextmanager
def sync_server(url: str) -> Iterator[str]:
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    verifier = BlockingTicketVerifier(
        BlockingTicketStore(client), key_prefix=PREFIX, audience=AUDIENCE
    )
    with sync_serve(
        sync_handler,
        "127.0.0.1",
        0,
        process_request=sync_ticket_auth(verifier),
        select_subprotocol=select_subprotocol,
    ) as ws_server:
        thread = threading.Thread(target=ws_server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"ws://127.0.0.1:{ws_server.socket.getsockname()[1]}/ws"
        finally:
            ws_server.shutdown()
            thread.join(TIMEOUT)
            verifier.close()


def mint(url: str) -> str:
    async def go() -> str:
        async with ticket_env(url) as env:
            return await env.mint("bob")

    return asyncio.run(go())


def test_sync_server_both_transports(redis_url: str) -> None:
    with sync_server(redis_url) as url:
        ticket = mint(redis_url)
        with sync_connect(f"{url}?ticket={ticket}", origin=Origin(ORIGIN)) as ws:
            assert json.loads(ws.recv()) == {"subject": "bob", "sub": None}
        ticket = mint(redis_url)
        with sync_connect(url, origin=Origin(ORIGIN), subprotocols=offer(ticket)) as ws:
            assert json.loads(ws.recv()) == {"subject": "bob", "sub": "ticketd.v1"}
            assert ws.response is not None
            assert ws.response.headers.get_all("Sec-WebSocket-Protocol") == ["ticketd.v1"]


def sync_status(url: str, *, origin: str = ORIGIN) -> int:
    with pytest.raises(InvalidStatus) as caught, sync_connect(url, origin=Origin(origin)):
        pass
    assert caught.value.response.body == b"ticket rejected\n"
    return caught.value.response.status_code


def test_sync_server_refusals(redis_url: str, redis_sync: redis.Redis) -> None:
    with sync_server(redis_url) as url:
        assert sync_status(url) == 401
        ticket = mint(redis_url)
        assert sync_status(f"{url}?ticket={ticket}&ticket={ticket}") == 400
        assert redis_sync.dbsize() == 1
        assert sync_status(f"{url}?ticket={ticket}", origin=OTHER_ORIGIN) == 403
        assert sync_status(f"{url}?ticket={ticket}") == 401


def test_sync_server_redis_down_is_503(private_redis: RedisServer) -> None:
    with sync_server(private_redis.url) as url:
        ticket = mint(private_redis.url)
        private_redis.stop()
        assert sync_status(f"{url}?ticket={ticket}") == 503
