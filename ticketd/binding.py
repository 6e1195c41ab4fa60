"""Binding checks: does a redeemed record fit the connection that presented it? No I/O.

A ticket is bound at mint to a subject, an origin, an audience and optionally a
client address. At redeem, the record has already been removed from the store
(single use); these checks decide whether the connection may use it.
"""

from __future__ import annotations

from .exceptions import InvalidOrigin, Reason, TicketRejected
from .origins import canonical_origin
from .tickets import Claims

__all__ = ["check_binding"]


def check_binding(
    claims: Claims,
    *,
    origin: str | None,
    audience: str | None,
    client_ip: str | None = None,
    now: float,
    ticket_hash: str | None = None,
) -> Claims:
    """Return ``claims`` if the connection matches them, else raise :class:`TicketRejected`.

    - expired records (a store that ignored the TTL) are ``invalid``;
    - ``origin`` is the presenting Origin header; missing, ``null``, invalid or
      different from the bound origin is ``origin_mismatch``;
    - ``audience``, when given, must equal the bound audience;
    - ``client_ip`` is checked only when the ticket was bound to an address.
    """
    if now >= claims.expires_at:
        raise TicketRejected(Reason.INVALID, ticket_hash=ticket_hash)
    try:
        presented = canonical_origin(origin) if origin is not None else None
    except InvalidOrigin:
        presented = None
    if presented is None or presented != claims.origin:
        raise TicketRejected(Reason.ORIGIN_MISMATCH, ticket_hash=ticket_hash)
    if audience is not None and audience != claims.audience:
        raise TicketRejected(Reason.AUDIENCE_MISMATCH, ticket_hash=ticket_hash)
    if claims.client_ip is not None and client_ip != claims.client_ip:
        raise TicketRejected(Reason.IP_MISMATCH, ticket_hash=ticket_hash)
    return claims
