"""The shared rejection mapping (ticketd.integrations._common), and helpers the adapter tests use.

The adapter test modules import :func:`ticket_env` from here: one place mints
tickets with :class:`TicketIssuer` and verifies them with the same store and prefix.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
import redis.asyncio

from tests.redisproc import RedisServer
from ticketd import Reason, TicketIssuer, TicketStore, TicketVerifier
from ticketd.integrations._common import Admitted, Denied, admit
from ticketd.tickets import ticket_key

ORIGIN = "https://app.example"
OTHER_ORIGIN = "https://evil.example"
AUDIENCE = "chat"
PREFIX = "itest:"

UPGRADE = [
    ("Host", "rt.example"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Version", "13"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
]


@dataclass
class TicketEnv:
    """An issuer and a verifier sharing one Redis, store and key prefix."""

    client: redis.asyncio.Redis
    issuer: TicketIssuer
    verifier: TicketVerifier

    async def mint(self, subject: str | int = "u1", *, origin: str = ORIGIN) -> str:
        issued = await self.issuer.mint(subject, origin=origin, audience=AUDIENCE)
        return issued.ticket

    async def stored(self, ticket: str) -> bool:
        """Whether the ticket is still redeemable (its record is in Redis)."""
        return bool(await self.client.exists(ticket_key(PREFIX, ticket)))


@asynccontextmanager
async def ticket_env(url: str, *, deadline: float = 1.0) -> AsyncIterator[TicketEnv]:
    client = redis.asyncio.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    store = TicketStore(client, deadline=deadline)
    try:
        yield TicketEnv(
            client=client,
            issuer=TicketIssuer(store, key_prefix=PREFIX),
            verifier=TicketVerifier(store, key_prefix=PREFIX, audience=AUDIENCE),
        )
    finally:
        await client.aclose()


def handshake(*extra: tuple[str, str], origin: str | None = ORIGIN) -> list[tuple[str, str]]:
    headers = [*UPGRADE, *extra]
    return [*headers, ("Origin", origin)] if origin is not None else headers


async def test_admits_a_query_ticket(redis_url: str) -> None:
    async with ticket_env(redis_url) as env:
        ticket = await env.mint()
        outcome = await admit(
            env.verifier, method="GET", target=f"/ws?ticket={ticket}", headers=handshake()
        )
        assert isinstance(outcome, Admitted)
        assert outcome.claims.subject == "u1"
        assert outcome.subprotocol is None
        assert not await env.stored(ticket)


async def test_admits_a_subprotocol_ticket(redis_url: str) -> None:
    async with ticket_env(redis_url) as env:
        ticket = await env.mint()
        headers = handshake(("Sec-WebSocket-Protocol", f"ticketd.v1, ticket.{ticket}"))
        outcome = await admit(env.verifier, method="GET", target="/ws", headers=headers)
        assert isinstance(outcome, Admitted)
        assert outcome.subprotocol == "ticketd.v1"


@pytest.mark.parametrize(
    ("method", "target", "extra", "status", "reason"),
    [
        ("POST", "/ws?ticket={t}", (), 400, Reason.BAD_HANDSHAKE),
        ("GET", "/ws", (), 401, Reason.MISSING),
        ("GET", "/ws?ticket={t}&ticket={t}", (), 400, Reason.DUPLICATE),
        ("GET", "/ws?ticket={t}", (("Sec-WebSocket-Protocol", "ticketd.v1, ticket.{t}"),), 400,
         Reason.DUPLICATE),
        ("GET", "/ws?ticket=short", (), 401, Reason.MALFORMED),
    ],
)  # fmt: skip
async def test_refusals_before_the_store_leave_the_ticket(
    redis_url: str,
    method: str,
    target: str,
    extra: tuple[tuple[str, str], ...],
    status: int,
    reason: Reason,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with ticket_env(redis_url) as env:
        ticket = await env.mint()
        headers = handshake(*((k, v.format(t=ticket)) for k, v in extra))
        if method == "POST":
            headers = headers[:1]  # a prefetcher: no upgrade headers either
        with caplog.at_level(logging.INFO, logger="ticketd.integrations"):
            outcome = await admit(
                env.verifier, method=method, target=target.format(t=ticket), headers=headers
            )
        assert outcome == Denied(status=status, reason=reason)
        assert await env.stored(ticket)
        assert f"reason={reason.value}" in caplog.text
        assert ticket not in caplog.text


@pytest.mark.parametrize(
    ("origin", "status", "reason"),
    [(OTHER_ORIGIN, 403, Reason.ORIGIN_MISMATCH), (None, 403, Reason.ORIGIN_MISMATCH)],
)
async def test_binding_refusals_burn_the_ticket(
    redis_url: str, origin: str | None, status: int, reason: Reason
) -> None:
    async with ticket_env(redis_url) as env:
        ticket = await env.mint()
        target = f"/ws?ticket={ticket}"
        outcome = await admit(
            env.verifier, method="GET", target=target, headers=handshake(origin=origin)
        )
        assert outcome == Denied(status=status, reason=reason)
        again = await admit(env.verifier, method="GET", target=target, headers=handshake())
        assert again == Denied(status=401, reason=Reason.INVALID)


async def test_two_origin_headers_are_refused(redis_url: str) -> None:
    async with ticket_env(redis_url) as env:
        ticket = await env.mint()
        headers = handshake(("Origin", ORIGIN))
        outcome = await admit(
            env.verifier, method="GET", target=f"/ws?ticket={ticket}", headers=headers
        )
        assert isinstance(outcome, Denied)
        assert outcome.status == 403


async def test_store_down_is_503_with_retry_after(private_redis: RedisServer) -> None:
    async with ticket_env(private_redis.url) as env:
        ticket = await env.mint()
        private_redis.stop()
        outcome = await admit(
            env.verifier, method="GET", target=f"/ws?ticket={ticket}", headers=handshake()
        )
        assert isinstance(outcome, Denied)
        assert (outcome.status, outcome.reason) == (503, None)
        assert ("Retry-After", "1") in outcome.headers
        assert outcome.body == "ticket rejected\n"
