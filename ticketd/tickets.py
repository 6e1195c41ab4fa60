"""Tickets and their records: generation, format check, hashing, encoding. No I/O.

A ticket is 32 bytes from the operating system's CSPRNG, encoded as 43 URL-safe
base64 characters without padding. It is a bearer secret; Redis stores only
the record under :func:`ticket_key`, a hash of it, so neither Redis nor
``MONITOR`` ever holds a usable ticket.

The record is a compact JSON array (the smallest self-describing form that keeps
subject types intact), versioned by its first element::

    [1, subject, origin, audience, issued_at_ms, expires_at_ms, client_ip|null, extra?]
    [2, subject, origin, audience, issued_at_ms, expires_at_ms, client_ip|null,
     session|null, auth_at_ms|null, session_expires_at_ms|null, extra?]

Version 2 carries the login the ticket was minted from (``docs/PROTOCOL.md``
section 3), which revocation checks; a record without session fields is written
as version 1, which every verifier reads.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

__all__ = [
    "TICKET_BYTES",
    "TICKET_LENGTH",
    "Claims",
    "JSONValue",
    "Subject",
    "decode_record",
    "encode_record",
    "is_well_formed",
    "log_id",
    "new_ticket",
    "ticket_digest",
    "ticket_key",
]

TICKET_BYTES = 32
TICKET_LENGTH = 43
_TICKET = re.compile(r"[A-Za-z0-9_-]{43}")
_CANONICAL_LAST = frozenset("AEIMQUYcgkosw048")
"""The last of 43 characters carries 4 bits and 2 zero bits: these 16 characters."""
_RECORD_VERSION = 1
_RECORD_VERSION_SESSION = 2
_RECORD_SHAPES = {(1, 7), (1, 8), (2, 10), (2, 11)}
"""(version, length) pairs a decoder accepts: the optional last element is ``extra``."""
_MAX_MILLIS = 2**53
"""Beyond this a record timestamp is garbage (and ``/ 1000`` could raise ``OverflowError``)."""

Subject: TypeAlias = str | int
JSONValue: TypeAlias = bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"] | None


def new_ticket() -> str:
    """Return a fresh ticket: 256 random bits, URL-safe, 43 characters."""
    return secrets.token_urlsafe(TICKET_BYTES)


def is_well_formed(ticket: object) -> bool:
    """Whether ``ticket`` has the exact shape :func:`new_ticket` produces.

    Checked before any Redis call, so garbage never costs a round trip. The
    last character carries 4 significant bits; a non-canonical one (which
    decodes to the same bytes) is refused so there is one spelling per ticket.
    """
    if not isinstance(ticket, str) or _TICKET.fullmatch(ticket) is None:
        return False
    return ticket[-1] in _CANONICAL_LAST


def ticket_digest(ticket: str) -> str:
    """SHA-256 of the ticket, first 16 bytes, URL-safe base64 (22 characters).

    The ticket has 256 bits of entropy, so an unsalted hash is safe; 128 bits
    of it are plenty to index a set of short-lived records.
    """
    digest = hashlib.sha256(ticket.encode("ascii")).digest()[:16]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def ticket_key(prefix: str, ticket: str) -> str:
    """The Redis key of a ticket's record."""
    return prefix + ticket_digest(ticket)


def log_id(ticket: str) -> str:
    """A short, non-secret identifier of a ticket for logs (8 characters of its hash)."""
    return ticket_digest(ticket)[:8]


@dataclass(frozen=True, slots=True)
class Claims:
    """What a redeemed ticket tells the WebSocket server about the connection."""

    subject: Subject
    origin: str
    audience: str
    issued_at: float
    """Seconds since the epoch (millisecond precision)."""
    expires_at: float
    client_ip: str | None = None
    extra: Mapping[str, JSONValue] = field(default_factory=dict)
    session: str | None = None
    """The app session the ticket was minted from (record v2), or ``None``."""
    auth_at: float | None = None
    """When that session was signed (the login), seconds since the epoch."""
    session_expires_at: float | None = None
    """When that session expires, seconds since the epoch."""

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping (used by the HTTP redeem endpoint)."""
        return {
            "subject": self.subject,
            "origin": self.origin,
            "audience": self.audience,
            "issued_at": self.issued_at,
            "expires_at": self.expires_at,
            "client_ip": self.client_ip,
            "extra": dict(self.extra),
            "session": self.session,
            "auth_at": self.auth_at,
            "session_expires_at": self.session_expires_at,
        }


def _has_session(claims: Claims) -> bool:
    return not (
        claims.session is None and claims.auth_at is None and claims.session_expires_at is None
    )


def _optional_millis(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds * 1000)


def encode_record(claims: Claims) -> bytes:
    """Serialise claims to the stored record (v2 when they carry a session, else v1)."""
    item: list[Any] = [
        _RECORD_VERSION_SESSION if _has_session(claims) else _RECORD_VERSION,
        claims.subject,
        claims.origin,
        claims.audience,
        round(claims.issued_at * 1000),
        round(claims.expires_at * 1000),
        claims.client_ip,
    ]
    if _has_session(claims):
        item += [
            claims.session,
            _optional_millis(claims.auth_at),
            _optional_millis(claims.session_expires_at),
        ]
    if claims.extra:
        item.append(claims.extra)
    return json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def decode_record(raw: bytes | str) -> Claims:
    """Parse a stored record. Raises ``ValueError`` on anything unexpected."""
    try:
        item = json.loads(raw)
    except RecursionError:  # deeply nested garbage; callers catch ValueError only
        raise ValueError("unknown ticket record format") from None
    if (
        not isinstance(item, list)
        or not item
        or type(item[0]) is not int  # not isinstance(): JSON true == 1
        or (item[0], len(item)) not in _RECORD_SHAPES
    ):
        raise ValueError("unknown ticket record format")
    _, subject, origin, audience, issued_ms, expires_ms, client_ip, *rest = item
    session, auth_ms, session_expires_ms = rest[:3] if item[0] == 2 else (None, None, None)
    rest = rest[3:] if item[0] == 2 else rest
    extra = rest[0] if rest else {}
    if (
        not isinstance(subject, str | int)
        or isinstance(subject, bool)
        or not isinstance(origin, str)
        or not isinstance(audience, str)
        or not _is_millis(issued_ms)
        or not _is_millis(expires_ms)
        or not isinstance(client_ip, str | None)
        or not isinstance(extra, dict)
        or not isinstance(session, str | None)
        or not (auth_ms is None or _is_millis(auth_ms))
        or not (session_expires_ms is None or _is_millis(session_expires_ms))
    ):
        raise ValueError("malformed ticket record")
    return Claims(
        subject=subject,
        origin=origin,
        audience=audience,
        issued_at=issued_ms / 1000,
        expires_at=expires_ms / 1000,
        client_ip=client_ip,
        extra=extra,
        session=session,
        auth_at=None if auth_ms is None else auth_ms / 1000,
        session_expires_at=None if session_expires_ms is None else session_expires_ms / 1000,
    )


def _is_millis(value: object) -> bool:
    """An integer millisecond timestamp; ``bool`` (JSON ``true``) does not count."""
    return type(value) is int and -_MAX_MILLIS <= value <= _MAX_MILLIS
