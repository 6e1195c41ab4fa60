"""Remembering session cookies that already verified: :class:`VerifiedCookies`.

A browser presents the same cookie on every (re)connect. Verifying its HMAC again
was the largest single cost left in the mint (about an eighth of it in a profile).
The answer for a given ``Cookie`` header is fixed for the life of the process —
the secrets and the subject key do not change — except for the age limit, so a
hit re-checks exactly what itsdangerous checks: the age of the *signed* timestamp,
``0 <= int(now) - timestamp <= max_age``. Only cookies that verified are kept (a
stranger cannot fill the cache without valid cookies), at most :data:`MAX_ENTRIES`
of them, none longer than :data:`MAX_HEADER_BYTES`. A miss, or an expired entry,
goes to :class:`~ticketd.sessions.SessionVerifier`, whose refusal reasons are kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from itsdangerous.encoding import base64_decode, bytes_to_int

from ..revocation import SessionRef, session_ref
from ..sessions import SessionVerifier, cookie_values
from ..tickets import Subject

__all__ = ["MAX_ENTRIES", "MAX_HEADER_BYTES", "VerifiedCookies"]

MAX_ENTRIES = 4096
MAX_HEADER_BYTES = 4096


def _signed_timestamp(value: str) -> int | None:
    """The timestamp inside an itsdangerous ``TimestampSigner`` value (``payload.ts.sig``)."""
    parts = value.rsplit(".", 2)
    if len(parts) != 3:
        return None
    try:
        return bytes_to_int(base64_decode(parts[1]))
    except Exception:
        return None


class VerifiedCookies:
    """``subject(cookie_headers)`` like the verifier's, without re-verifying known cookies."""

    def __init__(
        self,
        sessions: SessionVerifier,
        *,
        cookie_name: str,
        max_age: int,
        session_id_key: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sessions = sessions
        self.cookie_name = cookie_name
        self.max_age = max_age
        self.session_id_key = session_id_key
        self.clock = clock
        self._known: dict[tuple[str, ...], tuple[Subject, SessionRef, int]] = {}

    def subject(self, cookie_headers: list[str]) -> Subject:
        """The verified subject, or :class:`~ticketd.sessions.SessionInvalid`."""
        return self.login(cookie_headers)[0]

    def login(self, cookie_headers: list[str]) -> tuple[Subject, SessionRef]:
        """The verified subject and its login (:func:`~ticketd.revocation.session_ref`)."""
        key = tuple(cookie_headers)
        known = self._known.get(key)
        if known is not None:
            subject, ref, signed_at = known
            if 0 <= int(self.clock()) - signed_at <= self.max_age:
                return subject, ref
            del self._known[key]
        subject = self.sessions.subject(cookie_headers, cookie_name=self.cookie_name)
        (value,) = cookie_values(cookie_headers, self.cookie_name)  # verified: exactly one
        ref = session_ref(
            self.sessions.load(value),
            value,
            max_age=self.max_age,
            session_id_key=self.session_id_key,
        )
        timestamp = _signed_timestamp(value)
        if timestamp is not None and sum(len(h) for h in key) <= MAX_HEADER_BYTES:
            if len(self._known) >= MAX_ENTRIES:
                self._known.clear()
            self._known[key] = (subject, ref, timestamp)
        return subject, ref
