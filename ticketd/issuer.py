"""Minting tickets in-process: :class:`TicketIssuer`.

The HTTP service uses it behind the session cookie; a Python app that already
knows its user can use it directly and hand the ticket to its frontend.
"""

from __future__ import annotations

import json
import time
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Self, Unpack

from .exceptions import InvalidSubject, SessionExpiring
from .origins import canonical_origin
from .revocation import SessionRef
from .store import StoreOptions, TicketStore
from .tickets import Claims, JSONValue, Subject, encode_record, new_ticket, ticket_key

__all__ = [
    "DEFAULT_KEY_PREFIX",
    "DEFAULT_TTL",
    "MAX_AUDIENCE_LENGTH",
    "MAX_EXTRA_BYTES",
    "MAX_SAFE_INTEGER",
    "MAX_SUBJECT_LENGTH",
    "MAX_TTL",
    "MIN_SESSION_REMAINING",
    "MIN_TTL",
    "IssuedTicket",
    "PreparedTicket",
    "TicketIssuer",
    "validate_audience",
    "validate_extra",
    "validate_subject",
]

DEFAULT_KEY_PREFIX = "ticketd:"
DEFAULT_TTL = 30.0
MIN_TTL = 1.0
MAX_TTL = 300.0
MIN_SESSION_REMAINING = 2.0
"""Seconds a session must have left to mint from (:class:`~ticketd.exceptions.SessionExpiring`).

A ticket's TTL is capped at the session's remaining lifetime, and the socket it opens
closes with 4401 up to 10 % of that lifetime early: a session this close to its end
would mint a ticket for a socket that closes at once."""
MAX_EXTRA_BYTES = 1024
MAX_AUDIENCE_LENGTH = 128
MAX_SUBJECT_LENGTH = 256
MAX_SAFE_INTEGER = 2**53 - 1
"""The largest integer a JSON double (JavaScript's ``Number``) holds exactly."""
_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
"""Unicode categories a subject must not contain: controls, format characters (bidi
overrides, zero-width), surrogates, private use, unassigned, line/paragraph separators."""


@dataclass(frozen=True, slots=True)
class IssuedTicket:
    """A freshly minted ticket. ``ticket`` is a secret: hand it to the client only."""

    ticket: str
    claims: Claims

    @property
    def expires_at(self) -> float:
        return self.claims.expires_at

    @property
    def expires_in(self) -> float:
        return self.claims.expires_at - self.claims.issued_at

    def __repr__(self) -> str:
        return f"IssuedTicket(claims={self.claims!r})"


@dataclass(frozen=True, slots=True)
class PreparedTicket:
    """A ticket and its record, built but not stored yet (:meth:`TicketIssuer.prepare`)."""

    issued: IssuedTicket
    key: str
    record: bytes
    ttl_ms: int

    def __repr__(self) -> str:
        return f"PreparedTicket(issued={self.issued!r})"


def validate_subject(subject: object) -> Subject:
    """A subject every backend reads as the same user, or :class:`InvalidSubject`.

    An integer within ±(2**53 - 1) (never a bool: beyond, a JavaScript backend reads
    another number), or a string of 1 to 256 characters that is not all whitespace
    and has no control, format or separator characters.
    """
    if isinstance(subject, bool) or not isinstance(subject, str | int):
        raise InvalidSubject("not_str_or_int")
    if isinstance(subject, int):
        if not -MAX_SAFE_INTEGER <= subject <= MAX_SAFE_INTEGER:
            raise InvalidSubject("unsafe_integer")
        return subject
    if not subject:
        raise InvalidSubject("empty")
    if len(subject) > MAX_SUBJECT_LENGTH:
        raise InvalidSubject("too_long")
    if not subject.strip():
        raise InvalidSubject("blank")
    if any(unicodedata.category(char) in _INVISIBLE for char in subject):
        raise InvalidSubject("control_character")
    return subject


def validate_audience(audience: object) -> str:
    if not isinstance(audience, str) or not 0 < len(audience) <= MAX_AUDIENCE_LENGTH:
        raise ValueError("audience must be a string of 1 to 128 characters")
    if not audience.isprintable():
        raise ValueError("audience must not contain control characters")
    return audience


def validate_extra(extra: Mapping[str, JSONValue] | None) -> dict[str, JSONValue]:
    """Extra claims are a small JSON object (≤ 1 KiB serialised)."""
    if not extra:
        return {}
    try:
        encoded = json.dumps(dict(extra), separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):
        raise ValueError("extra claims must be JSON-serialisable") from None
    if len(encoded.encode("utf-8")) > MAX_EXTRA_BYTES:
        raise ValueError(f"extra claims exceed {MAX_EXTRA_BYTES} bytes")
    result: dict[str, JSONValue] = json.loads(encoded)
    return result


class TicketIssuer:
    """Mints tickets into a :class:`~ticketd.store.TicketStore`."""

    def __init__(
        self,
        store: TicketStore,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(store, str | bytes):
            raise TypeError("TicketIssuer takes a store; to connect use TicketIssuer.from_url(url)")
        if not MIN_TTL <= ttl <= MAX_TTL:
            raise ValueError(f"ttl must be between {MIN_TTL:g} and {MAX_TTL:g} seconds")
        self.store = store
        self.key_prefix = key_prefix
        self.ttl = ttl
        self.clock = clock

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        ttl: float = DEFAULT_TTL,
        **options: Unpack[StoreOptions],
    ) -> Self:
        """Connect to Redis at ``url``; ``options`` are :class:`~ticketd.store.StoreOptions`."""
        return cls(TicketStore.from_url(url, **options), key_prefix=key_prefix, ttl=ttl)

    def prepare(
        self,
        subject: Subject,
        *,
        origin: str,
        audience: str,
        ttl: float | None = None,
        extra: Mapping[str, JSONValue] | None = None,
        client_ip: str | None = None,
        session: SessionRef | None = None,
    ) -> PreparedTicket:
        """Validate the bindings and build a ticket and its record, without storing it.

        ``session`` (the login the ticket is minted from) makes the record a v2
        record that revocation checks (:mod:`ticketd.revocation`), and caps the TTL at
        the session's remaining lifetime: a ticket never outlives its session.

        Raises ``ValueError`` (:class:`~ticketd.exceptions.InvalidSubject`,
        :class:`~ticketd.exceptions.InvalidOrigin` and others) for bad arguments, and
        :class:`~ticketd.exceptions.SessionExpiring` when the session has less than
        :data:`MIN_SESSION_REMAINING` seconds left.
        """
        ttl = self.ttl if ttl is None else ttl
        if not MIN_TTL <= ttl <= MAX_TTL:
            raise ValueError(f"ttl must be between {MIN_TTL:g} and {MAX_TTL:g} seconds")
        now = self.clock()
        if session is not None:
            remaining = session.expires_at - now
            if remaining < MIN_SESSION_REMAINING:
                raise SessionExpiring(remaining)
            ttl = min(ttl, remaining)
        claims = Claims(
            subject=validate_subject(subject),
            origin=canonical_origin(origin),
            audience=validate_audience(audience),
            issued_at=round(now, 3),
            expires_at=round(now + ttl, 3),
            client_ip=client_ip,
            extra=validate_extra(extra),
            session=session.session if session else None,
            auth_at=session.auth_at if session else None,
            session_expires_at=session.expires_at if session else None,
        )
        ticket = new_ticket()
        return PreparedTicket(
            issued=IssuedTicket(ticket=ticket, claims=claims),
            key=ticket_key(self.key_prefix, ticket),
            record=encode_record(claims),
            ttl_ms=round(ttl * 1000),
        )

    async def mint(
        self,
        subject: Subject,
        *,
        origin: str,
        audience: str,
        ttl: float | None = None,
        extra: Mapping[str, JSONValue] | None = None,
        client_ip: str | None = None,
        session: SessionRef | None = None,
    ) -> IssuedTicket:
        """Create and store a ticket bound to ``subject``, ``origin`` and ``audience``.

        Raises ``ValueError`` (:class:`~ticketd.exceptions.InvalidSubject`,
        :class:`~ticketd.exceptions.InvalidOrigin` and others) for bad arguments and
        :class:`~ticketd.exceptions.SessionExpiring` (see :meth:`prepare`), before any
        store call, and :class:`~ticketd.exceptions.StoreUnavailable` if the
        record could not be stored — the ticket is then never returned.
        """
        prepared = self.prepare(
            subject,
            origin=origin,
            audience=audience,
            ttl=ttl,
            extra=extra,
            client_ip=client_ip,
            session=session,
        )
        await self.store.put(prepared.key, prepared.record, prepared.ttl_ms)
        return prepared.issued
