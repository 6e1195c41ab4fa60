"""Every error ticketd raises.

::

    TicketError                 base of everything below
     ├── TicketRejected         the ticket is refused; ``.reason`` says why
     ├── StoreUnavailable       Redis failed or did not answer in time
     └── InvalidOrigin          a string is not a serialised web origin

``TicketRejected.reason`` comes from the fixed :class:`Reason` set. Unknown, expired
and already-used tickets share one reason, ``invalid``: Redis cannot tell them
apart, and neither should a client.

The reason is for logs, metrics and trusted services. Browsers get only the HTTP
status from :data:`REJECTION_STATUS`, which every adapter uses.
"""

from __future__ import annotations

import enum

__all__ = [
    "REJECTION_STATUS",
    "InvalidOrigin",
    "Reason",
    "StoreUnavailable",
    "TicketError",
    "TicketRejected",
]


class Reason(enum.StrEnum):
    """Why a ticket was refused. Values are stable: dashboards and alerts key on them."""

    MISSING = "missing"
    """No ticket was presented."""
    DUPLICATE = "duplicate"
    """More than one ticket was presented (two parameters, or query and subprotocol)."""
    MALFORMED = "malformed"
    """Not shaped like a ticket; refused without a Redis call, nothing consumed."""
    INVALID = "invalid"
    """Unknown, expired or already used."""
    ORIGIN_MISMATCH = "origin_mismatch"
    """The presenting Origin is missing, invalid or not the one bound at mint."""
    AUDIENCE_MISMATCH = "audience_mismatch"
    """The ticket was minted for another service."""
    IP_MISMATCH = "ip_mismatch"
    """The ticket is bound to another client address."""
    BAD_HANDSHAKE = "bad_handshake"
    """The request is not a WebSocket upgrade; the ticket is left untouched."""
    REVOKED = "revoked"
    """The subject, session or connection was revoked (``docs/PROTOCOL.md`` section 6)."""


REJECTION_STATUS: dict[Reason, int] = {
    Reason.MISSING: 401,
    Reason.MALFORMED: 401,
    Reason.INVALID: 401,
    Reason.DUPLICATE: 400,
    Reason.BAD_HANDSHAKE: 400,
    Reason.ORIGIN_MISMATCH: 403,
    Reason.AUDIENCE_MISMATCH: 403,
    Reason.IP_MISMATCH: 403,
    Reason.REVOKED: 403,
}
"""HTTP status for each reason: 401 = no usable ticket, 403 = a ticket, not for you."""


class TicketError(Exception):
    """Base class of every exception raised by ticketd."""


class TicketRejected(TicketError):
    """A ticket was refused. ``reason`` is a :class:`Reason`; ``status`` the HTTP status.

    ``ticket_hash`` is a short prefix of the ticket's hash when the ticket was
    well formed: safe to log, useless to replay.
    """

    def __init__(self, reason: Reason, *, ticket_hash: str | None = None) -> None:
        super().__init__(reason.value)
        self.reason = reason
        self.ticket_hash = ticket_hash

    @property
    def status(self) -> int:
        return REJECTION_STATUS[self.reason]

    def __repr__(self) -> str:
        return f"TicketRejected({self.reason.value!r})"


class StoreUnavailable(TicketError):
    """The ticket store failed or timed out. Callers must fail closed (503, no 101)."""


class InvalidOrigin(TicketError, ValueError):
    """A value is not a serialised origin ``scheme://host[:port]``.

    The message describes the problem without repeating the value.
    """
