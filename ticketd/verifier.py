"""Redeeming tickets: :class:`TicketVerifier` (asyncio) and :class:`BlockingTicketVerifier`.

A redeem is three steps, the pure ones in :mod:`ticketd.redemption`:

1. format check (:func:`~ticketd.redemption.ticket_to_take`) — a malformed ticket is
   refused without a Redis call;
2. ``GETDEL`` of the ticket's hashed key — the ticket is burned whatever happens next;
3. the decision (:func:`~ticketd.redemption.decide`) on the removed record: expiry
   with the ``leeway``, then the bindings.

The twins differ in ``await`` only. Neither logs: the layer that answers the client
logs each refusal once (see :mod:`ticketd.redemption`); the raised
:class:`~ticketd.TicketRejected` carries the reason, the detail and a log-safe hash.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic, Self, TypeVar, Unpack

from .exceptions import TicketRejected
from .issuer import DEFAULT_KEY_PREFIX
from .redemption import DEFAULT_LEEWAY, Handshake, TakeTicket, decide, ticket_to_take
from .store import BlockingTicketStore, StoreOptions, TicketStore
from .tickets import Claims

__all__ = ["BlockingTicketVerifier", "TicketVerifier"]

_Store = TypeVar("_Store", TicketStore, BlockingTicketStore)


class _VerifierBase(Generic[_Store]):
    _store_class: type[_Store]
    store: _Store

    def __init__(
        self,
        store: _Store,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        audience: str | None = None,
        leeway: float = DEFAULT_LEEWAY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(store, str | bytes):
            name = type(self).__name__
            raise TypeError(f"{name} takes a store; to connect to a URL use {name}.from_url(url)")
        if leeway < 0:
            raise ValueError("leeway must not be negative")
        self.store = store
        self.key_prefix = key_prefix
        self.audience = audience
        self.leeway = leeway
        self.clock = clock

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        audience: str | None = None,
        leeway: float = DEFAULT_LEEWAY,
        **options: Unpack[StoreOptions],
    ) -> Self:
        """Connect to Redis at ``url``; ``options`` are :class:`~ticketd.store.StoreOptions`."""
        store: _Store = cls._store_class.from_url(url, **options)
        return cls(store, key_prefix=key_prefix, audience=audience, leeway=leeway)

    def _take(self, ticket: str) -> TakeTicket:
        return ticket_to_take(ticket, key_prefix=self.key_prefix)

    def _decide(
        self,
        raw: bytes | None,
        take: TakeTicket,
        origin: str | None,
        audience: str | None,
        client_ip: str | None,
    ) -> Claims:
        expected = audience if audience is not None else self.audience
        outcome = decide(
            raw,
            Handshake(origin=origin, audience=expected, client_ip=client_ip),
            now=self.clock(),
            leeway=self.leeway,
            ticket_hash=take.ticket_hash,
        )
        if isinstance(outcome, TicketRejected):
            raise outcome
        return outcome


class TicketVerifier(_VerifierBase[TicketStore]):
    """Redeems tickets against a :class:`~ticketd.store.TicketStore` (asyncio).

    ``audience`` is the audience this server expects when ``redeem`` is not given
    one; ``None`` accepts any audience (not recommended for shared Redis).
    ``leeway`` is how many seconds the issuer's and this server's clocks may disagree
    (:data:`~ticketd.redemption.DEFAULT_LEEWAY`); ``clock`` returns the time now.
    """

    _store_class = TicketStore

    async def redeem(
        self,
        ticket: str,
        *,
        origin: str | None,
        audience: str | None = None,
        client_ip: str | None = None,
    ) -> Claims:
        """Consume ``ticket`` and return its claims if the connection matches them.

        ``origin`` is the Origin header of the handshake (``None`` if absent).
        Raises :class:`TicketRejected` or :class:`StoreUnavailable`.
        """
        take = self._take(ticket)
        raw = await self.store.take(take.key)
        return self._decide(raw, take, origin, audience, client_ip)

    async def ping(self) -> None:
        """Raise :class:`StoreUnavailable` unless Redis answers within the deadline."""
        await self.store.ping()

    async def aclose(self) -> None:
        await self.store.aclose()


class BlockingTicketVerifier(_VerifierBase[BlockingTicketStore]):
    """:class:`TicketVerifier` for threaded servers (``websockets.sync``), the same options."""

    _store_class = BlockingTicketStore

    def redeem(
        self,
        ticket: str,
        *,
        origin: str | None,
        audience: str | None = None,
        client_ip: str | None = None,
    ) -> Claims:
        """Consume ``ticket`` and return its claims if the connection matches them.

        ``origin`` is the Origin header of the handshake (``None`` if absent).
        Raises :class:`TicketRejected` or :class:`StoreUnavailable`.
        """
        take = self._take(ticket)
        raw = self.store.take(take.key)
        return self._decide(raw, take, origin, audience, client_ip)

    def ping(self) -> None:
        """Raise :class:`StoreUnavailable` unless Redis answers within the deadline."""
        self.store.ping()

    def close(self) -> None:
        self.store.close()
