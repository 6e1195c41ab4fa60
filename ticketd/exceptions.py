"""Every error ticketd raises.

::

    TicketError                 base of everything below
     ├── TicketRejected         the ticket is refused; ``.reason`` says why, ``.detail`` more
     ├── StoreUnavailable       Redis failed or did not answer in time; ``.operation``, ``.cause``
     ├── InvalidOrigin          a string is not a serialised web origin (also a ``ValueError``)
     ├── InvalidSubject         a subject no backend reads the same (also a ``ValueError``)
     ├── SessionExpiring        the session ends too soon to mint from; ``.remaining``
     └── SessionInvalid         (:mod:`ticketd.sessions`) the login cookie is refused; ``.reason``

    ConfigError                 (:mod:`ticketd.service.settings`) the service's settings are
                                invalid; ``.problems``, one line each
    TicketDenied                (:mod:`ticketd.integrations.starlette`) a Starlette
                                ``WebSocketException`` carrying the adapter's ``Denied``
    BudgetExhausted             (:mod:`ticketd.audit.session`) an audit run used its
                                request budget
    Inconclusive                (:mod:`ticketd.audit.base`) an audit check could not be decided

The last four have other bases (``Exception``, Starlette's) and live with their
extras or tools; the audit's two never leave ``run_audit`` (the check is reported
inconclusive). Nothing else escapes ticketd's public functions on purpose, except ``TypeError`` and
``ValueError`` for bad arguments (a TTL out of range, a non-client passed as a store)
and, from the HTTP service's settings, pydantic's ``ValidationError`` (a
``ValueError``). A test walks the package and checks that every exception class it
defines is in this tree.

``TicketRejected.reason`` comes from the fixed :class:`Reason` set. Unknown, expired
and already-used tickets share one reason, ``invalid``: a client must not be able
to tell them apart. The logs can: an already-used ticket carries the detail
``replayed`` (its tombstone was found, :mod:`ticketd.tombstones`).

The reason is for logs, metrics and trusted services. Browsers get only the HTTP
status from :data:`REJECTION_STATUS`, which every adapter uses.
"""

from __future__ import annotations

import enum
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .tombstones import Replay

__all__ = [
    "REJECTION_STATUS",
    "Detail",
    "InvalidOrigin",
    "InvalidSubject",
    "Reason",
    "SessionExpiring",
    "StoreOperation",
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


class Detail(enum.StrEnum):
    """Why, beyond the :class:`Reason`, for logs and metrics only (the client sees the reason).

    Values are stable, like :class:`Reason`'s.
    """

    ISSUED_IN_FUTURE = "issued_in_future"
    """The record's ``issued_at`` is later than this server's clock plus the leeway: the
    issuer's clock runs ahead of the verifier's (reason ``invalid``)."""
    EXPIRED_BY_CLOCK = "expired_by_clock"
    """Redis still held the record, but its ``expires_at`` plus the leeway has passed by
    this server's clock: the verifier's clock runs ahead of the issuer's, or the store
    ignores TTLs (reason ``invalid``)."""
    UNREADABLE_RECORD = "unreadable_record"
    """The stored record could not be decoded (another writer, a version mismatch)."""
    SESSION_ENDED = "session_ended"
    """The record's ``session_expires_at`` has passed by this server's clock: the session
    the ticket was minted from is over (a ticket's TTL is capped at it, so only clock skew
    or a slow mint gets here; reason ``invalid``). No leeway: a socket must never open
    after its session ended."""
    REPLAYED = "replayed"
    """The ticket was redeemed before: Redis held its tombstone (reason ``invalid``, the
    same answer as an unknown ticket); :attr:`TicketRejected.replay` says more."""


class StoreOperation(enum.StrEnum):
    """What the store was doing when it failed (:attr:`StoreUnavailable.operation`)."""

    MINT = "mint"
    REDEEM = "redeem"
    PING = "ping"
    RATE_LIMIT = "rate_limit"
    REVOKE = "revoke"
    """Writing a revocation (:mod:`ticketd.revoker`)."""
    REVOCATION_CHECK = "revocation_check"
    """Reading the revocation state of a connection or login."""


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
    well formed: safe to log, useless to replay. ``detail`` (a :class:`Detail`, or
    ``None``) tells operators more than the reason does (a clock skew, say); it is for
    logs and metrics and never changes what the client is told.

    ``replay`` (a :class:`~ticketd.tombstones.Replay`) is set with the detail
    :attr:`Detail.REPLAYED`: how long ago the first use was, whether it came from the
    same client, what the replay policy did.
    """

    def __init__(
        self,
        reason: Reason,
        *,
        ticket_hash: str | None = None,
        detail: Detail | None = None,
        replay: Replay | None = None,
    ) -> None:
        super().__init__(reason.value)
        self.reason = reason
        self.ticket_hash = ticket_hash
        self.detail = detail
        self.replay = replay

    @property
    def status(self) -> int:
        return REJECTION_STATUS[self.reason]

    def __repr__(self) -> str:
        return f"TicketRejected({self.reason.value!r})"


class StoreUnavailable(TicketError):
    """The ticket store failed or timed out. Callers must fail closed (503, no 101).

    ``operation`` is the :class:`StoreOperation` that failed; ``cause`` the underlying
    exception (a redis-py error, ``OSError``, ``TimeoutError``), also chained as
    ``__cause__``, or ``None`` when Redis answered but not as required (a key that
    already exists, too few replicas). The message names the operation and the error
    (redis-py's text carries ``host:port`` and the errno), never a password: any
    ``scheme://user:password@`` in it is masked.
    """

    def __init__(
        self, message: str, *, operation: StoreOperation, cause: BaseException | None = None
    ) -> None:
        super().__init__(_masked(message))
        self.operation = operation
        self.cause = cause

    @classmethod
    def from_error(
        cls, operation: StoreOperation, error: BaseException, *, where: str | None = None
    ) -> StoreUnavailable:
        """The failure of ``operation`` on ``where`` (``host:port``) because of ``error``.

        Raise it ``from error``.
        """
        text = str(error) or "no answer within the deadline"
        at = f" on {where}" if where else ""
        message = f"{operation} failed{at}: {type(error).__name__}: {text}"
        return cls(message[:300], operation=operation, cause=error)


class InvalidSubject(TicketError, ValueError):
    """A subject that not every backend would read as the same user. ``code`` says why:

    ``not_str_or_int`` (a bool, a float, ``None`` ...), ``unsafe_integer`` (beyond
    ±(2**53 - 1), which a JavaScript or JSON-double backend reads as another number),
    ``empty``, ``blank`` (whitespace only), ``control_character``, ``too_long``
    (over 256 characters).
    """

    def __init__(self, code: str) -> None:
        super().__init__(f"invalid subject: {code}")
        self.code = code


class InvalidOrigin(TicketError, ValueError):
    """A value is not a serialised origin ``scheme://host[:port]``.

    The message describes the problem without repeating the value.
    """


class SessionExpiring(TicketError):
    """The session a ticket would be minted from ends in less than the minimum lifetime
    (:data:`~ticketd.issuer.MIN_SESSION_REMAINING`); ``remaining`` is the seconds it has
    left. The HTTP service answers ``401 session_expiring``: the user must log in again.
    """

    def __init__(self, remaining: float) -> None:
        super().__init__(f"session ends in {max(0.0, remaining):.1f}s")
        self.remaining = remaining


_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/@]*@")


def _masked(message: str) -> str:
    """``message`` with the userinfo (a password) of any URL in it replaced by ``***``."""
    return _USERINFO.sub(r"\1***@", message)
