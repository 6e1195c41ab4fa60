"""Binding checks: does a redeemed record fit the connection that presented it? No I/O.

A ticket is bound at mint to a subject, an origin, an audience and optionally a
client address. At redeem, the record has already been removed from the store
(single use); these checks decide whether the connection may use it.
"""

from __future__ import annotations

import ipaddress

from .exceptions import InvalidOrigin, Reason, TicketRejected
from .origins import canonical_origin
from .tickets import Claims

__all__ = ["canonical_ip", "check_binding"]


def canonical_ip(address: str | None) -> str | None:
    """One spelling per client address, or ``None`` if ``address`` is not one.

    Strips a port (``1.2.3.4:5678``, ``[::1]:443``) and brackets, and unmaps
    IPv4-mapped IPv6 (``::ffff:1.2.3.4``, what dual-stack sockets report for IPv4
    clients), so the address seen at mint and the one seen at the handshake compare
    equal when they are the same client.
    """
    if not address:
        return None
    text = address.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def check_binding(
    claims: Claims,
    *,
    origin: str | None,
    audience: str | None,
    client_ip: str | None = None,
    now: float,
    leeway: float = 0.0,
    ticket_hash: str | None = None,
) -> Claims:
    """Return ``claims`` if the connection matches them, else raise :class:`TicketRejected`.

    - expired records (a store that ignored the TTL, or a clock ahead of the issuer's
      by more than ``leeway`` seconds) are ``invalid``;
    - ``origin`` is the presenting Origin header; missing, ``null``, invalid or
      different from the bound origin is ``origin_mismatch``;
    - ``audience``, when given, must equal the bound audience;
    - ``client_ip`` is checked only when the ticket was bound to an address.
    """
    if now >= claims.expires_at + leeway:
        raise TicketRejected(Reason.INVALID, ticket_hash=ticket_hash)
    try:
        presented = canonical_origin(origin) if origin is not None else None
    except InvalidOrigin:
        presented = None
    if presented is None or presented != claims.origin:
        raise TicketRejected(Reason.ORIGIN_MISMATCH, ticket_hash=ticket_hash)
    if audience is not None and audience != claims.audience:
        raise TicketRejected(Reason.AUDIENCE_MISMATCH, ticket_hash=ticket_hash)
    if claims.client_ip is not None and (canonical_ip(client_ip) or client_ip) != (
        canonical_ip(claims.client_ip) or claims.client_ip
    ):
        raise TicketRejected(Reason.IP_MISMATCH, ticket_hash=ticket_hash)
    return claims
