"""Revocation, the pure part: key derivation, state decoding, the is-revoked rule, events.

No I/O. The wire format is ``docs/PROTOCOL.md`` section 6:

- the state in Redis is the truth, one key per subject (``rv:{S}:u`` with
  ``[not_before_ms, except_session_hash|null]``), per revoked session
  (``rv:{S}:s:H``) and per revoked connection (``rv:{S}:c:id``), all with the
  hash tag ``{S}`` so one ``MGET`` reads them on a Cluster. No raw subject or
  session id is ever part of a key;
- a stream (``revocations``) carries the same facts as events so that every
  WebSocket process closes matching sockets at once; it is only an accelerator.

:class:`Target` is what a live connection (or a ticket at redeem) is checked as:
subject hash, session hash, auth time and connection id. :func:`is_revoked`
decides on the state, :func:`matches` on an event; both apply the same rule.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from itsdangerous.encoding import base64_decode, bytes_to_int

from .tickets import Claims, Subject

__all__ = [
    "CONNECTION_ID",
    "EVENT_VERSION",
    "STREAM_MAXLEN",
    "Kind",
    "Revocation",
    "RevocationState",
    "SessionRef",
    "Target",
    "decode_event",
    "decode_state",
    "encode_event",
    "is_revoked",
    "matches",
    "session_hash",
    "session_ref",
    "signed_at",
    "state_keys",
    "state_value",
    "stream_key",
    "subject_id",
    "target_of",
]

Kind = Literal["subject", "session", "connection"]

EVENT_VERSION = "1"
STREAM_MAXLEN = 10_000
"""``XADD ... MAXLEN ~ 10000``: a consumer further behind than this resyncs."""

CONNECTION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""A connection id is a key fragment: URL-safe characters only, at most 64."""

_MAX_SAFE_INTEGER = 2**53 - 1
_MAX_SESSION_LENGTH = 256


def _b64_16(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()[:16]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def subject_id(subject: Subject) -> str:
    """``S(subject)``: the subject as it appears in revocation keys (22 characters)."""
    if isinstance(subject, bool) or not isinstance(subject, str | int):
        raise TypeError("subject must be a str or an int")
    if isinstance(subject, int):
        if abs(subject) > _MAX_SAFE_INTEGER:
            raise ValueError("integer subjects must be within ±(2**53 - 1)")
        return _b64_16(f"i:{subject}")
    if not 0 < len(subject) <= 256:
        raise ValueError("subject must be 1 to 256 characters")
    return _b64_16(f"s:{subject}")


def session_hash(session: str) -> str:
    """``H(session)``: a session id as it appears in keys and events."""
    if not isinstance(session, str) or not 0 < len(session) <= _MAX_SESSION_LENGTH:
        raise ValueError("session must be a string of 1 to 256 characters")
    return _b64_16(f"session:{session}")


def _base(prefix: str, sid: str) -> str:
    return f"{prefix}rv:{{{sid}}}"


def stream_key(prefix: str) -> str:
    return prefix + "revocations"


@dataclass(frozen=True, slots=True)
class Target:
    """A connection (or a ticket being redeemed) as revocation sees it."""

    subject: str
    """``S(subject)``."""
    session: str | None
    """``H(session)``, or ``None`` when the ticket carried no session."""
    auth_at_ms: int
    connection: str | None = None


def target_of(claims: Claims, connection: str | None = None) -> Target:
    """The revocation target of a redeemed ticket (``auth_at`` falls back to ``issued_at``)."""
    auth_at = claims.auth_at if claims.auth_at is not None else claims.issued_at
    return Target(
        subject=subject_id(claims.subject),
        session=session_hash(claims.session) if claims.session else None,
        auth_at_ms=round(auth_at * 1000),
        connection=connection,
    )


def state_keys(prefix: str, target: Target) -> list[str]:
    """The keys to ``MGET`` for ``target``: subject, then session and connection if any."""
    base = _base(prefix, target.subject)
    keys = [base + ":u"]
    if target.session is not None:
        keys.append(f"{base}:s:{target.session}")
    if target.connection is not None:
        keys.append(f"{base}:c:{target.connection}")
    return keys


@dataclass(frozen=True, slots=True)
class RevocationState:
    """What the ``MGET`` of :func:`state_keys` said."""

    not_before_ms: int | None = None
    except_session: str | None = None
    session_revoked: bool = False
    connection_revoked: bool = False


def decode_state(target: Target, values: Sequence[object]) -> RevocationState:
    """Read the ``MGET`` reply for :func:`state_keys`. Raises ``ValueError`` on garbage
    (callers fail closed)."""
    values = list(values)
    subject_raw = values.pop(0) if values else None
    session_raw = values.pop(0) if target.session is not None and values else None
    connection_raw = values.pop(0) if target.connection is not None and values else None
    not_before: int | None = None
    except_session: str | None = None
    if subject_raw is not None:
        text = subject_raw.decode() if isinstance(subject_raw, bytes) else str(subject_raw)
        item = json.loads(text)
        if (
            not isinstance(item, list)
            or len(item) != 2
            or type(item[0]) is not int
            or not isinstance(item[1], str | None)
        ):
            raise ValueError("unreadable subject revocation marker")
        not_before, except_session = item
    return RevocationState(
        not_before_ms=not_before,
        except_session=except_session,
        session_revoked=session_raw is not None,
        connection_revoked=connection_raw is not None,
    )


def _subject_rule(target: Target, not_before_ms: int | None, except_session: str | None) -> bool:
    if not_before_ms is None or target.auth_at_ms >= not_before_ms:
        return False
    return except_session is None or target.session != except_session


def is_revoked(state: RevocationState, target: Target) -> bool:
    """PROTOCOL.md section 6: the subject, session or connection rule holds."""
    return (
        _subject_rule(target, state.not_before_ms, state.except_session)
        or state.session_revoked
        or state.connection_revoked
    )


@dataclass(frozen=True, slots=True)
class Revocation:
    """One revocation: what the state keys and the stream event say.

    Build it with :meth:`of`, which validates and hashes the caller's values.
    """

    kind: Kind
    subject: str
    """``S(subject)``."""
    at_ms: int
    not_before_ms: int | None = None
    session: str | None = None
    """``H(session)`` (kind ``session``)."""
    except_session: str | None = None
    """``H(except_session)`` (kind ``subject``)."""
    connection: str | None = None

    @classmethod
    def of(
        cls,
        subject: Subject,
        *,
        at_ms: int,
        session: str | None = None,
        except_session: str | None = None,
        connection: str | None = None,
    ) -> Revocation:
        """Validate a request: a subject, and at most one of ``session`` / ``connection``;
        ``except_session`` only for a whole-subject revocation. ``ValueError``/``TypeError``
        name the problem (never the value)."""
        sid = subject_id(subject)
        if session is not None and connection is not None:
            raise ValueError("give session or connection, not both")
        if except_session is not None and (session is not None or connection is not None):
            raise ValueError("except_session applies to a whole-subject revocation only")
        if connection is not None:
            if not isinstance(connection, str) or not CONNECTION_ID.fullmatch(connection):
                raise ValueError("connection must be 1 to 64 of A-Z a-z 0-9 _ -")
            return cls("connection", sid, at_ms, connection=connection)
        if session is not None:
            return cls("session", sid, at_ms, session=session_hash(session))
        return cls(
            "subject",
            sid,
            at_ms,
            not_before_ms=at_ms,
            except_session=session_hash(except_session) if except_session is not None else None,
        )

    def state_key(self, prefix: str) -> str:
        base = _base(prefix, self.subject)
        if self.kind == "session":
            return f"{base}:s:{self.session}"
        if self.kind == "connection":
            return f"{base}:c:{self.connection}"
        return base + ":u"


def state_value(revocation: Revocation) -> str:
    """The value stored under :meth:`Revocation.state_key`."""
    if revocation.kind == "subject":
        marker = [revocation.not_before_ms, revocation.except_session]
        return json.dumps(marker, separators=(",", ":"))
    return str(revocation.at_ms)


def encode_event(revocation: Revocation) -> dict[str, str]:
    """The stream entry's fields (all strings)."""
    fields = {"v": EVENT_VERSION, "kind": revocation.kind, "subject": revocation.subject}
    if revocation.kind == "session" and revocation.session is not None:
        fields["session"] = revocation.session
    if revocation.kind == "connection" and revocation.connection is not None:
        fields["connection"] = revocation.connection
    if revocation.kind == "subject":
        fields["not_before"] = str(revocation.not_before_ms)
        if revocation.except_session is not None:
            fields["except"] = revocation.except_session
    fields["at"] = str(revocation.at_ms)
    return fields


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return value if isinstance(value, str) else None


def _millis(value: str | None) -> int | None:
    return int(value) if value is not None and value.isascii() and value.isdigit() else None


def decode_event(raw: Mapping[Any, Any]) -> Revocation | None:
    """Parse a stream entry; ``None`` for anything this version does not understand."""
    fields = {_text(k): _text(v) for k, v in raw.items()}
    kind, subject, at_ms = fields.get("kind"), fields.get("subject"), _millis(fields.get("at"))
    if fields.get("v") != EVENT_VERSION or not subject or at_ms is None:
        return None
    if kind == "subject":
        not_before = _millis(fields.get("not_before"))
        if not_before is None:
            return None
        return Revocation(
            "subject", subject, at_ms, not_before_ms=not_before, except_session=fields.get("except")
        )
    if kind == "session" and fields.get("session"):
        return Revocation("session", subject, at_ms, session=fields["session"])
    if kind == "connection" and fields.get("connection"):
        return Revocation("connection", subject, at_ms, connection=fields["connection"])
    return None


def matches(revocation: Revocation, target: Target) -> bool:
    """Whether an event revokes ``target`` (the same rule as :func:`is_revoked`)."""
    if revocation.subject != target.subject:
        return False
    if revocation.kind == "subject":
        return _subject_rule(target, revocation.not_before_ms, revocation.except_session)
    if revocation.kind == "session":
        return target.session is not None and revocation.session == target.session
    return target.connection is not None and revocation.connection == target.connection


# -- sessions ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionRef:
    """The login a session cookie stands for, as recorded in a v2 ticket record."""

    session: str
    """The app's session id, or ``"t" + signing time`` for stateless cookies."""
    auth_at: float
    """Seconds since the epoch: when the cookie was signed."""
    expires_at: float
    """Signing time plus the session's max age."""


def signed_at(cookie_value: str) -> int:
    """The signing time (seconds) of an itsdangerous-signed cookie value.

    Only call this on a value the session verifier has accepted: the timestamp is
    covered by the signature, and is decoded exactly as itsdangerous decodes it.
    """
    parts = cookie_value.rsplit(".", 2)
    if len(parts) != 3:
        raise ValueError("not a timestamped signed value")
    return bytes_to_int(base64_decode(parts[1]))


def session_ref(
    payload: object, cookie_value: str, *, max_age: int, session_id_key: str | None
) -> SessionRef:
    """What a verified session cookie says about the login.

    With ``session_id_key`` set and present in the payload (a string or integer),
    that is the session id; otherwise the cookie's signing time identifies the login.
    """
    signed = signed_at(cookie_value)
    session = f"t{signed}"
    if session_id_key and isinstance(payload, dict):
        value = payload.get(session_id_key)
        if isinstance(value, str) and 0 < len(value) <= _MAX_SESSION_LENGTH:
            session = value
        elif isinstance(value, int) and not isinstance(value, bool):
            session = str(value)
    return SessionRef(session=session, auth_at=float(signed), expires_at=float(signed + max_age))
