"""ticketd.integrations.channels: a Channels consumer behind the middleware, real Redis.

``channels.testing.WebsocketCommunicator`` cannot be imported without daphne, so
:class:`Communicator` is the same thin layer over asgiref's ``ApplicationCommunicator``.
"""

from __future__ import annotations

import json
from typing import Any

import django
import pytest
from django.conf import settings

if not settings.configured:
    settings.configure(INSTALLED_APPS=["channels"], USE_TZ=True)
    django.setup()

from asgiref.testing import ApplicationCommunicator
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from tests.support.adapters import (
    ORIGIN,
    OTHER_ORIGIN,
    UPGRADE,
    ticket_env,
)
from tests.support.redisproc import RedisServer
from ticketd import TicketVerifier
from ticketd.integrations.channels import (
    TicketAuthMiddlewareStack,
    claims_from_scope,
    ticket_subprotocol,
)


class ChatConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    async def connect(self) -> None:
        await self.accept(subprotocol=ticket_subprotocol(self.scope))
        await self.send_json({"subject": claims_from_scope(self.scope).subject})


class Communicator:
    """What ``channels.testing.WebsocketCommunicator`` does, without daphne."""

    def __init__(self, app: Any, scope: dict[str, Any]) -> None:
        self.inner: Any = ApplicationCommunicator(app, scope)  # type: ignore[no-untyped-call]

    async def connect(self) -> tuple[bool, Any]:
        await self.inner.send_input({"type": "websocket.connect"})
        response = await self.inner.receive_output(5)
        if response["type"] == "websocket.close":
            return False, response.get("code", 1000)
        assert response["type"] == "websocket.accept"
        return True, response.get("subprotocol")

    async def receive_json_from(self) -> Any:
        response = await self.inner.receive_output(5)
        assert response["type"] == "websocket.send"
        return json.loads(response["text"])

    async def disconnect(self) -> None:
        await self.inner.send_input({"type": "websocket.disconnect", "code": 1000})
        await self.inner.wait(5)


def communicator(
    verifier: TicketVerifier,
    query: str = "",
    *,
    origin: str = ORIGIN,
    subprotocols: list[str] | None = None,
) -> Communicator:
    headers = [(k.lower().encode(), v.encode()) for k, v in UPGRADE]
    headers.append((b"origin", origin.encode()))
    if subprotocols:
        headers.append((b"sec-websocket-protocol", ", ".join(subprotocols).encode()))
    app = TicketAuthMiddlewareStack(ChatConsumer.as_asgi(), verifier)
    scope = {
        "type": "websocket",
        "path": "/ws/",
        "query_string": query.removeprefix("?").encode(),
        "headers": headers,
        "subprotocols": subprotocols or [],
    }
    return Communicator(app, scope)


async def refused(comm: Communicator) -> int:
    connected, code = await comm.connect()
    await comm.inner.wait(5)
    assert not connected
    return int(code)


@pytest.mark.parametrize("transport", ["query", "subprotocol"])
async def test_both_transports(redis_url: str, transport: str) -> None:
    async with ticket_env(redis_url) as env:
        ticket = await env.mint(42)
        if transport == "query":
            comm = communicator(env.verifier, f"?ticket={ticket}")
        else:
            comm = communicator(env.verifier, subprotocols=["ticketd.v1", f"ticket.{ticket}"])
        connected, subprotocol = await comm.connect()
        assert connected
        assert subprotocol == ("ticketd.v1" if transport == "subprotocol" else None)
        assert await comm.receive_json_from() == {"subject": 42}
        await comm.disconnect()
        assert not await env.stored(ticket)


async def test_refusals_close_before_accept(redis_url: str) -> None:
    async with ticket_env(redis_url) as env:
        assert await refused(communicator(env.verifier)) == 1008
        ticket = await env.mint()
        twice = communicator(
            env.verifier, f"?ticket={ticket}", subprotocols=["ticketd.v1", f"ticket.{ticket}"]
        )
        assert await refused(twice) == 1008
        assert await env.stored(ticket)
        wrong = communicator(env.verifier, f"?ticket={ticket}", origin=OTHER_ORIGIN)
        assert await refused(wrong) == 1008
        assert not await env.stored(ticket)  # burned by the origin mismatch
        assert await refused(communicator(env.verifier, f"?ticket={ticket}")) == 1008


async def test_redis_down_closes_with_try_again_later(private_redis: RedisServer) -> None:
    async with ticket_env(private_redis.url) as env:
        ticket = await env.mint()
        private_redis.stop()
        assert await refused(communicator(env.verifier, f"?ticket={ticket}")) == 1013
