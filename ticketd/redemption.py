"""The redeem decision: pure functions, no I/O, the clock passed in.

Every redeem in ticketd — :class:`~ticketd.TicketVerifier`,
:class:`~ticketd.BlockingTicketVerifier`, and through them the HTTP redeem endpoint
and every framework adapter — is the same three steps, of which only the middle one
touches Redis::

    take = ticket_to_take(ticket, key_prefix=prefix)     # 1. format check → the key
    mark = first_use(client_ip, now=clock())             #    the tombstone to leave
    raw = store.take(take.key, encode_tombstone(mark))   # 2. SET XX GET: the ticket is burned
    outcome = decide(raw, Handshake(origin, audience, client_ip), now=clock(),
                     leeway=leeway, ticket_hash=take.ticket_hash,
                     connection=take.connection)     # 3. Claims or a refusal

**Replays.** Step 2 replaces the record by a tombstone (:mod:`ticketd.tombstones`)
that lives until the ticket's TTL. When step 2 returns a tombstone, the ticket was
used before: ``invalid`` (what an unknown ticket gets, byte for byte, at every
layer) with :attr:`~ticketd.exceptions.Detail.REPLAYED` and a
:class:`~ticketd.tombstones.Replay` on the rejection for the logs, the metrics and
the replay policy (:mod:`ticketd.replay`).

Like websockets' ``ServerProtocol.accept``, the decision turns facts into an outcome
and does nothing else: it returns the :class:`~ticketd.TicketRejected` it would
raise, so a caller (or a test) can inspect it without a ``try``.

**Expiry and clock skew.** Redis' TTL decides expiry: a record that is gone is
``invalid``. The record's own timestamps are checked too, against the verifier's
clock with ``leeway`` seconds of tolerance (:data:`DEFAULT_LEEWAY`) for clocks that
disagree a little:

- ``now >= expires_at + leeway`` with the record still in Redis: the verifier's
  clock runs ahead of the issuer's (or the store ignores TTLs) —
  ``invalid`` with :attr:`~ticketd.exceptions.Detail.EXPIRED_BY_CLOCK`;
- ``issued_at > now + leeway``: the issuer's clock runs ahead of the verifier's —
  ``invalid`` with :attr:`~ticketd.exceptions.Detail.ISSUED_IN_FUTURE`.

The client sees ``invalid`` either way; the detail is for the log line and tells an
operator that the clocks, not the ticket, are wrong.

**Logging happens in one layer: the one that answers the client.** Nothing here and
nothing in :mod:`ticketd.verifier` logs. The adapters log each refusal once through
:mod:`ticketd.integrations._common` (logger ``ticketd.integrations``), the HTTP
service once through its problem responses (logger ``ticketd.service``); both
include the reason, the detail and the ticket's log id. That layer also sees the
refusals that never reach a verifier (no ticket, two tickets, not an upgrade). A
library user calling ``redeem`` directly logs :class:`~ticketd.TicketRejected`'s
``reason``, ``detail`` and ``ticket_hash`` (all safe to log).
"""

from __future__ import annotations

from dataclasses import dataclass

from .binding import check_binding
from .exceptions import Detail, Reason, TicketRejected
from .tickets import Claims, decode_record, is_well_formed, ticket_digest
from .tombstones import connection_id, decode_tombstone, is_tombstone, replay_of

__all__ = ["DEFAULT_LEEWAY", "Handshake", "TakeTicket", "decide", "ticket_to_take"]

DEFAULT_LEEWAY = 5.0
"""Seconds two clocks (issuer's, verifier's) may disagree before the verifier notices."""


@dataclass(frozen=True, slots=True)
class TakeTicket:
    """A well-formed ticket's Redis key, and the id that stands for it in logs."""

    key: str
    ticket_hash: str
    connection: str = ""
    """:func:`~ticketd.tombstones.connection_id` of the ticket: the id its connection is
    registered under, which a replay's ``close_first`` revokes."""


@dataclass(frozen=True, slots=True)
class Handshake:
    """What the connection presenting the ticket says about itself.

    ``origin`` is its Origin header (``None`` if absent); ``audience`` the audience the
    server expects (``None``: any); ``client_ip`` its address, checked only against
    tickets bound to one.
    """

    origin: str | None
    audience: str | None
    client_ip: str | None = None


def ticket_to_take(ticket: object, *, key_prefix: str) -> TakeTicket:
    """Step 1: the key to take for ``ticket``, or ``TicketRejected(malformed)``.

    A malformed ticket is refused here, before any store call, and nothing is burned.
    """
    if not isinstance(ticket, str) or not is_well_formed(ticket):
        raise TicketRejected(Reason.MALFORMED)
    digest = ticket_digest(ticket)  # once: the key and the log id are both made of it
    return TakeTicket(
        key=key_prefix + digest,
        ticket_hash=digest[:8],
        connection=connection_id(ticket),
    )


def decide(
    raw: bytes | None,
    handshake: Handshake,
    *,
    now: float,
    leeway: float = DEFAULT_LEEWAY,
    ticket_hash: str | None = None,
    connection: str = "",
) -> Claims | TicketRejected:
    """Step 3: the removed value (``None``: there was none) and the handshake → the outcome.

    ``connection`` is :attr:`TakeTicket.connection`, for a replay's
    :attr:`~ticketd.tombstones.Replay.connection`."""
    if raw is None:
        return TicketRejected(Reason.INVALID, ticket_hash=ticket_hash)
    if is_tombstone(raw):
        return _replayed(raw, handshake, now=now, ticket_hash=ticket_hash, connection=connection)
    try:
        claims = decode_record(raw)
    except ValueError:
        return TicketRejected(
            Reason.INVALID, ticket_hash=ticket_hash, detail=Detail.UNREADABLE_RECORD
        )
    if claims.issued_at > now + leeway:
        return TicketRejected(
            Reason.INVALID, ticket_hash=ticket_hash, detail=Detail.ISSUED_IN_FUTURE
        )
    if now >= claims.expires_at + leeway:
        return TicketRejected(
            Reason.INVALID, ticket_hash=ticket_hash, detail=Detail.EXPIRED_BY_CLOCK
        )
    if claims.session_expires_at is not None and now >= claims.session_expires_at:
        return TicketRejected(Reason.INVALID, ticket_hash=ticket_hash, detail=Detail.SESSION_ENDED)
    try:
        return check_binding(
            claims,
            origin=handshake.origin,
            audience=handshake.audience,
            client_ip=handshake.client_ip,
            now=now,
            leeway=leeway,
            ticket_hash=ticket_hash,
        )
    except TicketRejected as exc:
        return exc


def _replayed(
    raw: bytes, handshake: Handshake, *, now: float, ticket_hash: str | None, connection: str
) -> TicketRejected:
    """A tombstone came back: ``invalid``, detail ``replayed`` (or ``unreadable_record``)."""
    try:
        tombstone = decode_tombstone(raw)
    except ValueError:
        return TicketRejected(
            Reason.INVALID, ticket_hash=ticket_hash, detail=Detail.UNREADABLE_RECORD
        )
    return TicketRejected(
        Reason.INVALID,
        ticket_hash=ticket_hash,
        detail=Detail.REPLAYED,
        replay=replay_of(tombstone, handshake.client_ip, now=now, connection=connection),
    )
