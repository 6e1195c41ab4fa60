"""One set of tests over both twins: asyncio and blocking verifiers and stores.

Like websockets' test suite per implementation and itsdangerous's ``FreezeMixin``:
a test is written once, against :class:`AnyStore` / :class:`AnyVerifier`, whose
methods are coroutines whichever twin is behind them (the blocking one runs in a
worker thread, as a threaded server would run it). :class:`Stores` holds an asyncio
and a blocking store over the same data (fakeredis or a real redis-server), so a
ticket minted by the asyncio issuer is redeemable by either verifier.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from ticketd import (
    BlockingTicketStore,
    BlockingTicketVerifier,
    Claims,
    TicketIssuer,
    TicketStore,
    TicketVerifier,
)

__all__ = ["BACKENDS", "KINDS", "AnyStore", "AnyVerifier", "Kind", "Stores", "wait_mode_verifier"]

Kind = Literal["async", "blocking"]
KINDS: tuple[Kind, ...] = ("async", "blocking")
BACKENDS = ("fakeredis", "redis-server")


@dataclass
class AnyStore:
    """Either store, driven with ``await``."""

    inner: TicketStore | BlockingTicketStore

    async def put(self, key: str, record: bytes, ttl_ms: int) -> None:
        if isinstance(self.inner, TicketStore):
            await self.inner.put(key, record, ttl_ms)
        else:
            await asyncio.to_thread(self.inner.put, key, record, ttl_ms)

    async def take(self, key: str) -> bytes | None:
        if isinstance(self.inner, TicketStore):
            return await self.inner.take(key)
        return await asyncio.to_thread(self.inner.take, key)

    async def ping(self) -> None:
        if isinstance(self.inner, TicketStore):
            await self.inner.ping()
        else:
            await asyncio.to_thread(self.inner.ping)


@dataclass
class AnyVerifier:
    """Either verifier, driven with ``await``."""

    inner: TicketVerifier | BlockingTicketVerifier

    async def redeem(self, ticket: str, **kwargs: Any) -> Claims:
        if isinstance(self.inner, TicketVerifier):
            return await self.inner.redeem(ticket, **kwargs)
        return await asyncio.to_thread(self.inner.redeem, ticket, **kwargs)

    async def ping(self) -> None:
        if isinstance(self.inner, TicketVerifier):
            await self.inner.ping()
        else:
            await asyncio.to_thread(self.inner.ping)

    async def close(self) -> None:
        if isinstance(self.inner, TicketVerifier):
            await self.inner.aclose()
        else:
            await asyncio.to_thread(self.inner.close)


def wait_mode_verifier(kind: Kind, url: str) -> AnyVerifier:
    """A verifier of twin ``kind`` with ``wait_replicas=1`` whose WAIT a busy CI box meets.

    WAIT's own timeout is half the smaller of the deadline and the socket timeout; with
    the default socket timeout (0.5 s) it had 250 ms, and CI once missed the replica's
    acknowledgement on the success path. These give it 2 s."""
    verifier_class = TicketVerifier if kind == "async" else BlockingTicketVerifier
    return AnyVerifier(
        verifier_class.from_url(url, wait_replicas=1, deadline=8.0, socket_timeout=4.0)
    )


@dataclass
class Stores:
    """An asyncio and a blocking store over the same data, and the twin under test."""

    async_store: TicketStore
    blocking_store: BlockingTicketStore
    kind: Kind = "async"

    @property
    def store(self) -> AnyStore:
        """The store of the twin under test."""
        return AnyStore(self.async_store if self.kind == "async" else self.blocking_store)

    def issuer(self, **kwargs: Any) -> TicketIssuer:
        """Mints with the asyncio store (the service's), whichever twin redeems."""
        return TicketIssuer(self.async_store, **kwargs)

    def verifier(self, *, clock: Callable[[], float] | None = None, **kwargs: Any) -> AnyVerifier:
        """A verifier of the twin under test over the shared data."""
        if clock is not None:
            kwargs["clock"] = clock
        if self.kind == "async":
            return AnyVerifier(TicketVerifier(self.async_store, **kwargs))
        return AnyVerifier(BlockingTicketVerifier(self.blocking_store, **kwargs))

    async def aclose(self) -> None:
        await self.async_store.aclose()
        self.blocking_store.close()
