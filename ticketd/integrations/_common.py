"""The one rejection mapping every adapter shares.

An adapter turns its framework's request into ``method``, ``target`` and header
pairs, calls :func:`admit` (or :func:`present` then :func:`redeem`, when it must
check something between the two), and turns the result into its framework's
response: :class:`Admitted` carries the claims and the subprotocol to select,
:class:`Denied` the HTTP status and headers to answer with.

The order is fixed:

1. not a WebSocket upgrade → 400 ``bad_handshake``, store untouched;
2. no, two or a malformed ticket → 401/400 from :func:`~ticketd.extract_ticket`,
   store untouched;
3. ``redeem`` with the single Origin header → claims, or
   :data:`~ticketd.REJECTION_STATUS` of the reason, or 503 with ``Retry-After: 1``
   when the store is unavailable.

Browsers get :data:`DENIAL_BODY` and nothing else. This module is the one place
an adapter's refusal is logged (the verifier does not log, see
:mod:`ticketd.redemption`): one line per refusal on the ``ticketd.integrations``
_logger, with the reason, the detail (a clock skew, say) and a short hash of the
ticket, never the ticket.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict

from ..exceptions import REJECTION_STATUS, Reason, StoreUnavailable, TicketError, TicketRejected
from ..handshake import (
    SUBPROTOCOL_TICKET_PREFIX,
    HeaderPairs,
    PresentedTicket,
    extract_ticket,
    is_websocket_upgrade,
    request_origin,
)
from ..replay import replay_fields
from ..tickets import Claims, log_id
from ..tombstones import connection_id

if TYPE_CHECKING:
    from ..verifier import BlockingTicketVerifier, TicketVerifier

__all__ = [
    "DENIAL_BODY",
    "UNAVAILABLE_STATUS",
    "Admitted",
    "Denied",
    "admit",
    "admit_blocking",
    "is_ticket_subprotocol",
    "missing_extra",
    "present",
    "redeem",
    "redeem_blocking",
]

_logger = logging.getLogger("ticketd.integrations")

DENIAL_BODY = "ticket rejected\n"
"""The whole body of every refusal: the same text for every reason."""

UNAVAILABLE_STATUS = 503


@dataclass(frozen=True, slots=True)
class Admitted:
    """The ticket was redeemed. ``subprotocol`` is what the server must select (or ``None``);
    ``connection_id`` the id to register the connection under (a replay's ``close_first``
    revokes it: :func:`~ticketd.tombstones.connection_id` of the ticket)."""

    claims: Claims
    subprotocol: str | None
    connection_id: str | None = None


@dataclass(frozen=True, slots=True)
class Denied:
    """Refuse the handshake with ``status``; ``reason`` is ``None`` when the store failed."""

    status: int
    reason: Reason | None
    headers: tuple[tuple[str, str], ...] = (("Cache-Control", "no-store"),)
    body: str = DENIAL_BODY

    @property
    def close_code(self) -> int:
        """WebSocket close code for servers that can only close before accepting."""
        return 1013 if self.reason is None else 1008  # try again later / policy violation


def _rejected(exc: TicketRejected) -> Denied:
    _logger.log(
        logging.WARNING if exc.detail is not None else logging.INFO,
        "websocket handshake refused reason=%s ticket=%s%s%s",
        exc.reason.value,
        exc.ticket_hash or "-",
        f" detail={exc.detail.value}" if exc.detail is not None else "",
        replay_fields(exc.replay),
    )
    return Denied(status=REJECTION_STATUS[exc.reason], reason=exc.reason)


def _unavailable(ticket: str, exc: StoreUnavailable) -> Denied:
    _logger.warning(
        "websocket handshake refused: store unavailable ticket=%s why=%s", log_id(ticket), exc
    )
    return Denied(
        status=UNAVAILABLE_STATUS,
        reason=None,
        headers=(("Cache-Control", "no-store"), ("Retry-After", "1")),
    )


def present(method: str, target: str, headers: HeaderPairs) -> PresentedTicket | Denied:
    """Steps 1 and 2: find the ticket without touching the store.

    ``target`` is the request target (``/path?query``) or the bare query string.
    """
    headers = list(headers)
    try:
        presented = extract_ticket(target, headers)
    except TicketRejected as exc:
        found: PresentedTicket | TicketRejected = exc
    else:
        found = presented
    if not is_websocket_upgrade(method, headers):
        # A prefetcher's GET: refuse it and leave the ticket redeemable.
        ticket_hash = log_id(found.ticket) if isinstance(found, PresentedTicket) else None
        return _rejected(TicketRejected(Reason.BAD_HANDSHAKE, ticket_hash=ticket_hash))
    return _rejected(found) if isinstance(found, TicketRejected) else found


async def redeem(
    verifier: TicketVerifier,
    presented: PresentedTicket,
    headers: HeaderPairs,
    *,
    audience: str | None = None,
    client_ip: str | None = None,
) -> Admitted | Denied:
    """Step 3 with the asyncio verifier: burn the ticket and check its bindings."""
    facts = _facts(headers, audience, client_ip)
    try:
        return _settle(presented, await verifier.redeem(presented.ticket, **facts))
    except TicketError as exc:
        return _settle(presented, exc)


def redeem_blocking(
    verifier: BlockingTicketVerifier,
    presented: PresentedTicket,
    headers: HeaderPairs,
    *,
    audience: str | None = None,
    client_ip: str | None = None,
) -> Admitted | Denied:
    """Step 3 with the blocking verifier."""
    facts = _facts(headers, audience, client_ip)
    try:
        return _settle(presented, verifier.redeem(presented.ticket, **facts))
    except TicketError as exc:
        return _settle(presented, exc)


class _Facts(TypedDict):
    origin: str | None
    audience: str | None
    client_ip: str | None


def _facts(headers: HeaderPairs, audience: str | None, client_ip: str | None) -> _Facts:
    """What the handshake tells the verifier: the single Origin header, and the caller's."""
    return {"origin": request_origin(headers), "audience": audience, "client_ip": client_ip}


def _settle(presented: PresentedTicket, result: Claims | TicketError) -> Admitted | Denied:
    """The outcome of a redeem, the same for the asyncio and the blocking verifier."""
    if isinstance(result, TicketRejected):
        return _rejected(result)
    if isinstance(result, StoreUnavailable):
        return _unavailable(presented.ticket, result)
    if isinstance(result, TicketError):
        raise result
    return Admitted(
        claims=result,
        subprotocol=presented.subprotocol,
        connection_id=connection_id(presented.ticket),
    )


async def admit(
    verifier: TicketVerifier,
    *,
    method: str,
    target: str,
    headers: HeaderPairs,
    audience: str | None = None,
    client_ip: str | None = None,
) -> Admitted | Denied:
    """The whole check for one handshake (asyncio)::

    outcome = await admit(verifier, method="GET", target="/ws?ticket=...", headers=pairs)
    if isinstance(outcome, Denied):
        return plain_response(outcome.status, outcome.body, outcome.headers)
    """
    headers = list(headers)
    presented = present(method, target, headers)
    if isinstance(presented, Denied):
        return presented
    return await redeem(verifier, presented, headers, audience=audience, client_ip=client_ip)


def admit_blocking(
    verifier: BlockingTicketVerifier,
    *,
    method: str,
    target: str,
    headers: HeaderPairs,
    audience: str | None = None,
    client_ip: str | None = None,
) -> Admitted | Denied:
    """:func:`admit` for threaded servers, with a :class:`~ticketd.BlockingTicketVerifier`."""
    headers = list(headers)
    presented = present(method, target, headers)
    if isinstance(presented, Denied):
        return presented
    return redeem_blocking(verifier, presented, headers, audience=audience, client_ip=client_ip)


def is_ticket_subprotocol(token: str) -> bool:
    """Whether a subprotocol token carries a ticket (and so must never be selected or logged)."""
    return token.strip().startswith(SUBPROTOCOL_TICKET_PREFIX)


def missing_extra(module: str, package: str, extra: str) -> ImportError:
    """The ImportError an adapter raises when its framework is not installed."""
    return ImportError(f"{module} needs {package}: pip install 'ticketd[{extra}]'")
