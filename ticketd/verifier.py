"""Redeeming tickets: :class:`TicketVerifier` (asyncio) and :class:`BlockingTicketVerifier`.

A redeem is three steps:

1. format check — a malformed ticket is refused without a Redis call;
2. ``GETDEL`` of the ticket's hashed key — the ticket is burned whatever happens next;
3. binding checks (:func:`~ticketd.binding.check_binding`) on the removed record.

Rejections are logged on ``ticketd.verifier`` with the reason and a short hash of
the ticket, never the ticket itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from .binding import check_binding
from .connection import RedisOptions, async_client, sync_client
from .exceptions import Reason, StoreUnavailable, TicketRejected
from .issuer import DEFAULT_KEY_PREFIX
from .store import BlockingTicketStore, TicketStore
from .tickets import Claims, decode_record, is_well_formed, log_id, ticket_key

__all__ = ["BlockingTicketVerifier", "TicketVerifier"]

logger = logging.getLogger("ticketd.verifier")


class _VerifierBase:
    def __init__(
        self,
        *,
        key_prefix: str,
        audience: str | None,
        clock: Callable[[], float],
    ) -> None:
        self.key_prefix = key_prefix
        self.audience = audience
        self.clock = clock

    def _key(self, ticket: str) -> tuple[str, str]:
        if not is_well_formed(ticket):
            logger.info("ticket rejected reason=%s", Reason.MALFORMED.value)
            raise TicketRejected(Reason.MALFORMED)
        return ticket_key(self.key_prefix, ticket), log_id(ticket)

    def _finish(
        self,
        raw: bytes | None,
        *,
        ticket_hash: str,
        origin: str | None,
        audience: str | None,
        client_ip: str | None,
    ) -> Claims:
        try:
            if raw is None:
                raise TicketRejected(Reason.INVALID, ticket_hash=ticket_hash)
            try:
                claims = decode_record(raw)
            except ValueError:
                logger.error("ticket record unreadable ticket=%s", ticket_hash)
                raise TicketRejected(Reason.INVALID, ticket_hash=ticket_hash) from None
            return check_binding(
                claims,
                origin=origin,
                audience=audience if audience is not None else self.audience,
                client_ip=client_ip,
                now=self.clock(),
                ticket_hash=ticket_hash,
            )
        except TicketRejected as exc:
            logger.info("ticket rejected reason=%s ticket=%s", exc.reason.value, ticket_hash)
            raise


class TicketVerifier(_VerifierBase):
    """Redeems tickets against a :class:`~ticketd.store.TicketStore` (asyncio).

    ``audience`` is the audience this server expects when ``redeem`` is not given
    one; ``None`` accepts any audience (not recommended for shared Redis).
    """

    def __init__(
        self,
        store: TicketStore,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        audience: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(key_prefix=key_prefix, audience=audience, clock=clock)
        self.store = store

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        audience: str | None = None,
        deadline: float = 1.0,
        **options: Any,
    ) -> TicketVerifier:
        """Connect to Redis at ``url``; ``options`` are :class:`RedisOptions` fields."""
        client = async_client(RedisOptions(url=url, **options))
        return cls(TicketStore(client, deadline=deadline), key_prefix=key_prefix, audience=audience)

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
        key, ticket_hash = self._key(ticket)
        try:
            raw = await self.store.take(key)
        except StoreUnavailable:
            logger.warning("ticket store unavailable during redeem ticket=%s", ticket_hash)
            raise
        return self._finish(
            raw, ticket_hash=ticket_hash, origin=origin, audience=audience, client_ip=client_ip
        )

    async def ping(self) -> None:
        await self.store.ping()

    async def aclose(self) -> None:
        await self.store.aclose()


class BlockingTicketVerifier(_VerifierBase):
    """The same as :class:`TicketVerifier` for threaded servers (``websockets.sync``)."""

    def __init__(
        self,
        store: BlockingTicketStore,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        audience: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(key_prefix=key_prefix, audience=audience, clock=clock)
        self.store = store

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        audience: str | None = None,
        **options: Any,
    ) -> BlockingTicketVerifier:
        client = sync_client(RedisOptions(url=url, **options))
        return cls(BlockingTicketStore(client), key_prefix=key_prefix, audience=audience)

    def redeem(
        self,
        ticket: str,
        *,
        origin: str | None,
        audience: str | None = None,
        client_ip: str | None = None,
    ) -> Claims:
        """Blocking :meth:`TicketVerifier.redeem`."""
        key, ticket_hash = self._key(ticket)
        try:
            raw = self.store.take(key)
        except StoreUnavailable:
            logger.warning("ticket store unavailable during redeem ticket=%s", ticket_hash)
            raise
        return self._finish(
            raw, ticket_hash=ticket_hash, origin=origin, audience=audience, client_ip=client_ip
        )

    def ping(self) -> None:
        self.store.ping()

    def close(self) -> None:
        self.store.close()
