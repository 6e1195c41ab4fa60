"""Tickets for adapter tests: an issuer and a verifier over one Redis and key prefix."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import redis.asyncio

from ticketd import TicketIssuer, TicketStore, TicketVerifier
from ticketd.revocation import SessionRef
from ticketd.tickets import ticket_key
from ticketd.tombstones import is_tombstone

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

    async def mint_ending(self, subject: str | int, *, session_ends_in: float) -> str:
        """A ticket whose session expires ``session_ends_in`` seconds from now.

        The mint refuses a session with less than ``MIN_SESSION_REMAINING`` left, so
        this issuer's clock runs ten seconds behind: the ticket (its TTL capped at the
        session) and its session then end together, ``session_ends_in`` from now."""
        lag = 10.0
        now = time.time()
        lagging = TicketIssuer(
            self.issuer.store, key_prefix=PREFIX, clock=lambda: time.time() - lag
        )
        session = SessionRef(
            session="s-" + str(subject), auth_at=now - 60, expires_at=now + session_ends_in
        )
        issued = await lagging.mint(subject, origin=ORIGIN, audience=AUDIENCE, session=session)
        return issued.ticket

    async def stored(self, ticket: str) -> bool:
        """Whether the ticket is still redeemable (its record, not a tombstone, is in Redis)."""
        value = await self.client.get(ticket_key(PREFIX, ticket))
        return value is not None and not is_tombstone(value)

    async def tombstoned(self, ticket: str) -> bool:
        """Whether the ticket was redeemed (its tombstone is in Redis)."""
        value = await self.client.get(ticket_key(PREFIX, ticket))
        return value is not None and is_tombstone(value)


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
