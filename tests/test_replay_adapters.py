"""Replays through every adapter, on the wire: the refusal is byte-identical to an unknown
ticket's, the log line says ``replayed``; ``close_first`` closes the first socket (4403);
a Prometheus observer counts under the service's metric names.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import websockets
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry, generate_latest
from websockets.asyncio.server import ServerConnection, serve
from websockets.typing import Origin, Subprotocol

from tests.support.adapters import ORIGIN, PREFIX, ticket_env
from tests.support.apps import aiohttp_app, handler, starlette_app, uvicorn_server
from ticketd import TicketStore, TicketVerifier
from ticketd.integrations.websockets import select_subprotocol, ticket_auth
from ticketd.liveness import RevocationWatch
from ticketd.redemption_metrics import PrometheusRedemptionObserver
from ticketd.tickets import new_ticket

TIMEOUT = 5.0


async def hold_open(connection: ServerConnection) -> None:
    await connection.send("hello")
    await connection.wait_closed()


@asynccontextmanager
async def websockets_server(
    verifier: TicketVerifier, watch: RevocationWatch | None = None
) -> AsyncIterator[str]:
    async with serve(
        hold_open if watch is not None else handler,
        "127.0.0.1",
        0,
        process_response=ticket_auth(verifier, watch=watch),
        select_subprotocol=select_subprotocol,
    ) as server:
        yield f"ws://127.0.0.1:{next(iter(server.sockets)).getsockname()[1]}/ws"


@asynccontextmanager
async def aiohttp_server(verifier: TicketVerifier) -> AsyncIterator[str]:
    async with TestServer(aiohttp_app(verifier), host="127.0.0.1") as server:
        yield str(server.make_url("/ws"))


SERVERS: dict[str, Callable[[TicketVerifier], Any]] = {
    "websockets": websockets_server,
    "asgi middleware (uvicorn)": lambda v: uvicorn_server(starlette_app(v)),
    "aiohttp": aiohttp_server,
}


async def raw_answer(url: str, ticket: str) -> bytes:
    """A raw handshake; the whole answer (status, headers, body) without its Date."""
    port = int(url.rsplit(":", 1)[1].removesuffix("/ws"))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET /ws?ticket={ticket} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: {ORIGIN}\r\n\r\n".encode()
    )
    async with asyncio.timeout(TIMEOUT):
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ),
            0,
        )
        body = await reader.readexactly(length)
    writer.close()
    await writer.wait_closed()
    kept = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"date:")]
    return b"\r\n".join(kept) + body


@pytest.mark.parametrize("kind", list(SERVERS))
async def test_a_replay_answers_what_an_unknown_ticket_does(
    redis_url: str, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "ticketd.integrations")
    async with ticket_env(redis_url) as env, SERVERS[kind](env.verifier) as url:
        ticket = await env.mint()
        first = await raw_answer(url, ticket)
        assert first.startswith(b"HTTP/1.1 101")
        replayed = await raw_answer(url, ticket)
        unknown = await raw_answer(url, new_ticket())
    assert replayed.startswith(b"HTTP/1.1 401")
    assert replayed == unknown
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 2
    assert "reason=invalid" in refusals[0]
    assert "detail=replayed" in refusals[0]
    assert "same_client=yes" in refusals[0]  # both from 127.0.0.1
    assert "detail=" not in refusals[1]  # the unknown one
    assert ticket not in caplog.text


@pytest.mark.parametrize("policy", ["close_first", "alert"])
async def test_close_first_closes_the_first_socket_with_4403(redis_url: str, policy: str) -> None:
    async with ticket_env(redis_url) as env:
        verifier = TicketVerifier(
            TicketStore(env.client), key_prefix=PREFIX, on_replay=policy, replay_grace=0
        )
        async with (
            RevocationWatch(env.client, key_prefix=PREFIX) as watch,
            websockets_server(verifier, watch) as url,
        ):
            ticket = await env.mint()
            offered = [Subprotocol("ticketd.v1"), Subprotocol(f"ticket.{ticket}")]
            async with websockets.connect(
                url, subprotocols=offered, origin=Origin(ORIGIN)
            ) as first:
                await first.recv()  # the handler's hello: the connection is live
                replayed = await raw_answer(url, ticket)
                assert replayed.startswith(b"HTTP/1.1 401")
                if policy == "close_first":
                    async with asyncio.timeout(TIMEOUT):
                        await first.wait_closed()
                    assert first.close_code == 4403
                else:  # the control: alert revokes nothing, the socket lives on
                    assert await env.client.keys(f"{PREFIX}rv:*") == []
                    async with asyncio.timeout(TIMEOUT):
                        await (await first.ping())
                    assert first.close_code is None


async def test_a_prometheus_observer_counts_replays_apart(redis_url: str) -> None:
    registry = CollectorRegistry()
    metrics = PrometheusRedemptionObserver(registry)
    async with ticket_env(redis_url) as env:
        verifier = TicketVerifier(TicketStore(env.client), key_prefix=PREFIX, observers=[metrics])
        ticket = await env.mint()
        await verifier.redeem(ticket, origin=ORIGIN, client_ip="192.0.2.1")
        for address in ("192.0.2.1", "192.0.2.99"):  # a retry, then a replay
            with pytest.raises(Exception, match="invalid"):
                await verifier.redeem(ticket, origin=ORIGIN, client_ip=address)
        with pytest.raises(Exception, match="invalid"):
            await verifier.redeem(new_ticket(), origin=ORIGIN)
    text = generate_latest(registry).decode()
    assert 'ticketd_redemptions_total{outcome="ok",via="websocket"} 1.0' in text
    assert 'ticketd_redemptions_total{outcome="replayed",via="websocket"} 2.0' in text
    assert 'ticketd_redemptions_total{outcome="invalid",via="websocket"} 1.0' in text
    assert 'ticketd_replays_total{kind="retry"} 1.0' in text
    assert 'ticketd_replays_total{kind="replay"} 1.0' in text
