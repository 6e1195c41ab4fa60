"""Redeeming tickets: :class:`TicketVerifier` (asyncio) and :class:`BlockingTicketVerifier`.

A redeem is three steps, the pure ones in :mod:`ticketd.redemption`:

1. format check (:func:`~ticketd.redemption.ticket_to_take`) — a malformed ticket is
   refused without a Redis call;
2. ``SET key tombstone XX GET KEEPTTL`` on the ticket's hashed key — the ticket is
   burned whatever happens next, and its tombstone (:mod:`ticketd.tombstones`) stays
   until the TTL;
3. the decision (:func:`~ticketd.redemption.decide`) on the removed value: a
   tombstone is a replay; a record is checked for expiry with the ``leeway``, then
   the bindings. An accepted record's tombstone then gets the subject and session
   hashes (:meth:`~ticketd.store.TicketStore.settle`, best effort).

A replay is refused with ``invalid`` like an unknown ticket; then the verifier
applies its replay policy (``on_replay``, :mod:`ticketd.replay`; an active policy
writes a revocation before the refusal is raised) and tells its ``observers``
(metrics, the webhook), as it does for every other outcome.

The twins differ in ``await`` only. Neither logs: the layer that answers the client
logs each refusal once (see :mod:`ticketd.redemption`); the raised
:class:`~ticketd.TicketRejected` carries the reason, the detail, a log-safe hash
and, for a replay, :class:`~ticketd.tombstones.Replay`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Generic, Self, TypeVar, Unpack

from .exceptions import StoreUnavailable, TicketError, TicketRejected
from .issuer import DEFAULT_KEY_PREFIX
from .redemption import DEFAULT_LEEWAY, Handshake, TakeTicket, decide, ticket_to_take
from .replay import (
    DEFAULT_REPLAY_GRACE,
    RedemptionObserver,
    ReplayPolicy,
    action_for,
    notify,
    replay_policy,
    responded,
    revocation_for,
)
from .revocation import Revocation
from .revoker import DEFAULT_TTL, BlockingRevoker, Revoker
from .store import BlockingTicketStore, StoreOptions, TicketStore
from .tickets import Claims
from .tombstones import Tombstone, encode_tombstone, first_use, settled

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
        on_replay: ReplayPolicy | str = ReplayPolicy.ALERT,
        replay_grace: float = DEFAULT_REPLAY_GRACE,
        observers: Sequence[RedemptionObserver] = (),
        revocation_ttl: float = DEFAULT_TTL,
    ) -> None:
        if isinstance(store, str | bytes):
            name = type(self).__name__
            raise TypeError(f"{name} takes a store; to connect to a URL use {name}.from_url(url)")
        if not (math.isfinite(leeway) and leeway >= 0):
            raise ValueError("leeway must be a finite number of seconds, not negative")
        if not (math.isfinite(replay_grace) and replay_grace >= 0):
            raise ValueError("replay_grace must be a finite number of seconds, not negative")
        if not (math.isfinite(revocation_ttl) and revocation_ttl > 0):
            # Checked here, not at the first replay an active policy acts on.
            raise ValueError("revocation_ttl must be a positive number of seconds")
        self.store = store
        self.key_prefix = key_prefix
        self.audience = audience
        self.leeway = leeway
        self.clock = clock
        self.on_replay = replay_policy(on_replay)
        self.replay_grace = replay_grace
        self.observers = tuple(observers)
        self.revocation_ttl = revocation_ttl

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        audience: str | None = None,
        leeway: float = DEFAULT_LEEWAY,
        on_replay: ReplayPolicy | str = ReplayPolicy.ALERT,
        replay_grace: float = DEFAULT_REPLAY_GRACE,
        observers: Sequence[RedemptionObserver] = (),
        revocation_ttl: float = DEFAULT_TTL,
        **options: Unpack[StoreOptions],
    ) -> Self:
        """Connect to Redis at ``url``; ``options`` are :class:`~ticketd.store.StoreOptions`."""
        store: _Store = cls._store_class.from_url(url, **options)
        return cls(
            store,
            key_prefix=key_prefix,
            audience=audience,
            leeway=leeway,
            on_replay=on_replay,
            replay_grace=replay_grace,
            observers=observers,
            revocation_ttl=revocation_ttl,
        )

    def _take(self, ticket: str, client_ip: str | None) -> tuple[TakeTicket, Tombstone]:
        take = ticket_to_take(ticket, key_prefix=self.key_prefix)
        return take, first_use(client_ip, now=self.clock())

    def _decide(
        self,
        raw: bytes | None,
        take: TakeTicket,
        origin: str | None,
        audience: str | None,
        client_ip: str | None,
    ) -> Claims | TicketRejected:
        expected = audience if audience is not None else self.audience
        return decide(
            raw,
            Handshake(origin=origin, audience=expected, client_ip=client_ip),
            now=self.clock(),
            leeway=self.leeway,
            ticket_hash=take.ticket_hash,
            connection=take.connection,
        )

    def _response(self, rejection: TicketRejected) -> tuple[str, Revocation | None]:
        """The policy's action for a replay, and the revocation it writes (if any)."""
        if rejection.replay is None:
            return "none", None
        action = action_for(rejection.replay, self.on_replay, self.replay_grace)
        at_ms = round(self.clock() * 1000)
        return action, revocation_for(rejection.replay, action, at_ms=at_ms)

    def _notify(self, result: Claims | TicketError) -> None:
        notify(self.observers, result)


class TicketVerifier(_VerifierBase[TicketStore]):
    """Redeems tickets against a :class:`~ticketd.store.TicketStore` (asyncio).

    ``audience`` is the audience this server expects when ``redeem`` is not given
    one; ``None`` accepts any audience (not recommended for shared Redis).
    ``leeway`` is how many seconds the issuer's and this server's clocks may disagree
    (:data:`~ticketd.redemption.DEFAULT_LEEWAY`); ``clock`` returns the time now.
    ``on_replay`` is the replay policy (:class:`~ticketd.replay.ReplayPolicy`) and
    ``replay_grace`` the seconds within which the active policies let a same-client
    retry pass; ``observers`` are told every outcome
    (:class:`~ticketd.replay.RedemptionObserver`: metrics, the replay webhook);
    ``revocation_ttl`` is how long the revocations an active policy writes last (the
    session max age, as for :class:`~ticketd.revoker.Revoker`).
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
        try:
            claims = await self._redeem(ticket, origin, audience, client_ip)
        except TicketError as exc:
            self._notify(exc)
            raise
        self._notify(claims)
        return claims

    async def _redeem(
        self, ticket: str, origin: str | None, audience: str | None, client_ip: str | None
    ) -> Claims:
        take, mark = self._take(ticket, client_ip)
        raw = await self.store.take(take.key, encode_tombstone(mark))
        outcome = self._decide(raw, take, origin, audience, client_ip)
        if isinstance(outcome, Claims):  # the handshake need not wait for the settle
            await self.store.settle_in_order(take.key, encode_tombstone(settled(mark, outcome)))
            return outcome
        if (first := _write_back(outcome, raw)) is not None:
            await self.store.settle_in_order(take.key, first)  # the first use's, not ours
        raise await self._respond(outcome)

    async def _respond(self, rejection: TicketRejected) -> TicketRejected:
        """Apply the replay policy to a refusal (a replay); the refusal to raise."""
        action, revocation = self._response(rejection)
        if revocation is not None:
            try:
                await self._revoker().write(revocation, reason="replay")
            except StoreUnavailable:
                action += "_failed"
        return responded(rejection, action, grace=self.replay_grace)

    def _revoker(self) -> Revoker:
        return Revoker(
            self.store.client,
            key_prefix=self.key_prefix,
            ttl=self.revocation_ttl,
            deadline=self.store.deadline,
        )

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
        try:
            claims = self._redeem(ticket, origin, audience, client_ip)
        except TicketError as exc:
            self._notify(exc)
            raise
        self._notify(claims)
        return claims

    def _redeem(
        self, ticket: str, origin: str | None, audience: str | None, client_ip: str | None
    ) -> Claims:
        take, mark = self._take(ticket, client_ip)
        raw = self.store.take(take.key, encode_tombstone(mark))
        outcome = self._decide(raw, take, origin, audience, client_ip)
        if isinstance(outcome, Claims):
            self.store.settle(take.key, encode_tombstone(settled(mark, outcome)))
            return outcome
        if (first := _write_back(outcome, raw)) is not None:
            self.store.settle(take.key, first)  # the first use's tombstone, not ours
        raise self._respond(outcome)

    def _respond(self, rejection: TicketRejected) -> TicketRejected:
        """Apply the replay policy to a refusal (a replay); the refusal to raise."""
        action, revocation = self._response(rejection)
        if revocation is not None:
            try:
                self._revoker().write(revocation, reason="replay")
            except StoreUnavailable:
                action += "_failed"
        return responded(rejection, action, grace=self.replay_grace)

    def _revoker(self) -> BlockingRevoker:
        return BlockingRevoker(
            self.store.client, key_prefix=self.key_prefix, ttl=self.revocation_ttl
        )

    def ping(self) -> None:
        """Raise :class:`StoreUnavailable` unless Redis answers within the deadline."""
        self.store.ping()

    def close(self) -> None:
        self.store.close()


def _write_back(rejection: TicketRejected, raw: bytes | None) -> bytes | None:
    """The first use's tombstone, if a replay is to put it back (ours overwrote it).

    Only once that tombstone holds the subject: before, the first use's settle may
    still be on its way, and writing back would erase what it adds (it replaces our
    tombstone anyway). After a refused first use (never settled) later uses see the
    second one as the first."""
    replay = rejection.replay
    return raw if replay is not None and replay.subject is not None else None
