"""Session cookies: verifying the app's login cookie to learn who is asking for a ticket.

Three formats, all signed with itsdangerous and verified with the app's secret:

``ticketd``
    ``URLSafeTimedSerializer(secret, salt="ticketd.session")`` with JSON; issue
    them from Python with :func:`issue_session_cookie`.
``flask``
    Flask's ``SecureCookieSessionInterface``: salt ``cookie-session``, HMAC key
    derivation, SHA-1, Flask's tagged JSON, optional zlib compression.
``starlette``
    Starlette's ``SessionMiddleware``: ``TimestampSigner`` with its default salt
    over base64-encoded JSON.

The current secret signs; fallbacks (older secrets, newest first) still verify, for
rotation. ``max_age`` is enforced on the signature timestamp; a timestamp in the
future is refused too. The subject is read from one configured key and must be a
subject every backend reads the same (:func:`~ticketd.issuer.validate_subject`).

Anything keyed on the session (rate limits) must use the returned subject, never
the raw cookie string: itsdangerous signatures are malleable, so one session can
be spelled several ways.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import json
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from itsdangerous import (
    BadPayload,
    BadSignature,
    SignatureExpired,
    TimestampSigner,
    URLSafeTimedSerializer,
)

from .exceptions import InvalidSubject, TicketError
from .issuer import validate_subject
from .tickets import Subject

__all__ = [
    "MAX_COOKIE_LENGTH",
    "TICKETD_SALT",
    "SessionFormat",
    "SessionInvalid",
    "SessionReason",
    "SessionVerifier",
    "cookie_values",
    "issue_session_cookie",
]

SessionFormat = Literal["ticketd", "flask", "starlette"]

TICKETD_SALT = "ticketd.session"
MAX_COOKIE_LENGTH = 4096


class SessionReason(enum.StrEnum):
    """Why a session cookie was refused. Values are stable: logs and metrics key on them."""

    MISSING = "missing"
    """No session cookie."""
    DUPLICATE = "duplicate"
    """The cookie twice (a sibling subdomain tossing its own)."""
    TOO_LONG = "too_long"
    """Longer than :data:`MAX_COOKIE_LENGTH`."""
    BAD_SIGNATURE = "bad_signature"
    """Not signed with the secret or a fallback, or tampered with."""
    EXPIRED = "expired"
    """Signed longer ago than ``max_age``, or dated in the future."""
    BAD_PAYLOAD = "bad_payload"
    """Correctly signed but not decodable."""
    NO_SUBJECT = "no_subject"
    """No subject under the configured key."""
    BAD_SUBJECT = "bad_subject"
    """A subject :func:`~ticketd.issuer.validate_subject` refuses (``.subject_code`` says why)."""


class SessionInvalid(TicketError):
    """The session cookie is missing, duplicated, forged, expired or lacks a subject.

    ``reason`` is a :class:`SessionReason` (a ``str`` enum: ``exc.reason == "expired"``
    holds); for ``bad_subject``, ``subject_code`` is the
    :class:`~ticketd.exceptions.InvalidSubject` code, else ``None``.
    """

    def __init__(self, reason: SessionReason, *, subject_code: str | None = None) -> None:
        super().__init__(reason.value)
        self.reason = reason
        self.subject_code = subject_code


class _FlaskTaggedJSON:
    """Decoder for Flask's tagged JSON (``flask.json.tag``), without importing Flask."""

    @staticmethod
    def loads(value: str | bytes) -> Any:
        return json.loads(value, object_hook=_FlaskTaggedJSON._untag)

    @staticmethod
    def dumps(value: Any) -> str:  # only needed to satisfy the serializer interface
        return json.dumps(value, separators=(",", ":"))

    @staticmethod
    def _untag(obj: dict[str, Any]) -> Any:
        if len(obj) != 1:
            return obj
        ((key, value),) = obj.items()
        if key == " t":
            return tuple(value)
        if key == " u":
            return uuid.UUID(value)
        if key == " b":
            return base64.b64decode(value)
        if key == " m":
            return str(value)
        if key == " d":
            from email.utils import parsedate_to_datetime

            return parsedate_to_datetime(value)
        if key == " di":
            return {k[:-2] if k.endswith("__") else k: v for k, v in value.items()}
        return obj


class _StarletteFormat:
    """Starlette ``SessionMiddleware``: ``TimestampSigner`` over base64(JSON)."""

    def __init__(self, keys: list[bytes]) -> None:
        self.signer = TimestampSigner(keys)

    def loads(self, value: str, max_age: int) -> Any:
        data = self.signer.unsign(value.encode("utf-8"), max_age=max_age)
        try:
            return json.loads(base64.b64decode(data, validate=True))
        except (binascii.Error, ValueError):
            raise SessionInvalid(SessionReason.BAD_PAYLOAD) from None


class SessionVerifier:
    """Verify one cookie format with a secret and its fallbacks.

    >>> verifier = SessionVerifier("ticketd", secret=key, subject_key="user_id")
    >>> verifier.subject(cookie_header_values, cookie_name="session")
    """

    def __init__(
        self,
        session_format: SessionFormat,
        *,
        secret: str | bytes,
        fallbacks: Sequence[str | bytes] = (),
        max_age: int = 14 * 24 * 3600,
        subject_key: str = "user_id",
    ) -> None:
        # itsdangerous signs with the last key and verifies with all of them.
        keys = [
            k.encode("utf-8") if isinstance(k, str) else k for k in (*reversed(fallbacks), secret)
        ]
        self.format = session_format
        self.max_age = max_age
        self.subject_key = subject_key
        self._starlette: _StarletteFormat | None = None
        self._serializer: URLSafeTimedSerializer | None = None
        if session_format == "ticketd":
            self._serializer = URLSafeTimedSerializer(keys, salt=TICKETD_SALT)
        elif session_format == "flask":
            self._serializer = URLSafeTimedSerializer(
                keys,
                salt="cookie-session",
                serializer=_FlaskTaggedJSON,
                signer_kwargs={"key_derivation": "hmac", "digest_method": hashlib.sha1},
            )
        elif session_format == "starlette":
            self._starlette = _StarletteFormat(keys)
        else:
            raise ValueError(f"unknown session format {session_format!r}")

    def load(self, value: str) -> Any:
        """The verified session payload, or :class:`SessionInvalid`."""
        if len(value) > MAX_COOKIE_LENGTH:
            raise SessionInvalid(SessionReason.TOO_LONG)
        try:
            if self._starlette is not None:
                return self._starlette.loads(value, self.max_age)
            assert self._serializer is not None
            return self._serializer.loads(value, max_age=self.max_age)
        except SessionInvalid:
            raise
        except SignatureExpired:
            # Too old, or dated in the future (itsdangerous raises the same class).
            raise SessionInvalid(SessionReason.EXPIRED) from None
        except BadSignature:
            # Decide on the class, never on the message: it quotes the (attacker's) signature.
            raise SessionInvalid(SessionReason.BAD_SIGNATURE) from None
        except BadPayload:
            # Correctly signed but undecodable (not itsdangerous's BadSignature family).
            raise SessionInvalid(SessionReason.BAD_PAYLOAD) from None
        except (ValueError, TypeError, UnicodeError):
            raise SessionInvalid(SessionReason.BAD_PAYLOAD) from None

    def subject_from(self, value: str) -> Subject:
        """Verify a cookie value and return its subject."""
        payload = self.load(value)
        if not isinstance(payload, dict) or self.subject_key not in payload:
            raise SessionInvalid(SessionReason.NO_SUBJECT)
        try:
            return validate_subject(payload[self.subject_key])
        except InvalidSubject as exc:
            raise SessionInvalid(SessionReason.BAD_SUBJECT, subject_code=exc.code) from None

    def subject(self, cookie_headers: Iterable[str], *, cookie_name: str) -> Subject:
        """Find exactly one cookie ``cookie_name`` in the Cookie headers and verify it."""
        values = cookie_values(cookie_headers, cookie_name)
        if not values:
            raise SessionInvalid(SessionReason.MISSING)
        if len(values) > 1:
            raise SessionInvalid(SessionReason.DUPLICATE)
        return self.subject_from(values[0])


def cookie_values(cookie_headers: Iterable[str], name: str) -> list[str]:
    """Every value of cookie ``name`` across Cookie headers (duplicates kept).

    Parsed by hand: ``http.cookies`` silently keeps only the last duplicate, and
    duplicates are how cookie-tossing attacks from a sibling subdomain show up.
    """
    found = []
    for header in cookie_headers:
        for part in header.split(";"):
            key, sep, value = part.strip().partition("=")
            if sep and key.strip() == name:
                value = value.strip()
                if len(value) >= 2 and value[0] == value[-1] == '"':
                    value = value[1:-1]
                found.append(value)
    return found


def issue_session_cookie(data: dict[str, Any], *, secret: str | bytes) -> str:
    """Sign ``data`` as a ``ticketd``-format session cookie value.

    For Python apps that want ticketd to recognise their logins::

        value = issue_session_cookie({"user_id": 42}, secret=KEY)
        response.set_cookie("session", value, httponly=True, secure=True, samesite="lax")
    """
    return URLSafeTimedSerializer(secret, salt=TICKETD_SALT).dumps(data)
