"""Tombstones: what a redeemed ticket leaves behind, and what a replay learns from it. No I/O.

A redeem replaces the record by a tombstone in one atomic command
(``SET key tombstone XX GET KEEPTTL``, :mod:`ticketd.store`), which lives until the
ticket's TTL. A later redeem of the same ticket gets the tombstone back: the
ticket was **replayed**, not unknown. The client is told exactly what an unknown
ticket is told (``invalid``); the logs, metrics, the replay policy and the webhook
know more (:class:`Replay`).

The tombstone is a compact JSON array, version ``0`` (records are ``1`` and ``2``,
so no decoder mistakes one for the other; ``docs/PROTOCOL.md`` section 8)::

    [0, first_used_ms, client|null, subject|null, session|null]

- ``first_used_ms``: when the first redeem ran, by the redeeming server's clock;
- ``client``: :func:`client_fingerprint` of the first redeemer's client address;
- ``subject`` / ``session``: ``S(subject)`` and ``H(session)`` of
  :mod:`ticketd.revocation`, written by a second command once the record was read
  and accepted (the first command cannot know them); ``null`` before that, or when
  the first use was refused.

The first connection's id is not stored: it is :func:`connection_id` of the ticket,
which every later redeem of the same ticket holds (what ``close_first`` revokes).

Nothing in it is a secret: hashes and a time.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from .binding import canonical_ip
from .revocation import session_hash, subject_id
from .tickets import Claims

__all__ = [
    "TOMBSTONE_VERSION",
    "Replay",
    "Tombstone",
    "client_fingerprint",
    "connection_id",
    "decode_tombstone",
    "encode_tombstone",
    "first_use",
    "is_tombstone",
    "replay_of",
    "settled",
]

TOMBSTONE_VERSION = 0
_LENGTH = 5
_MAX_MILLIS = 2**53
_URL_SAFE = re.compile(r"[A-Za-z0-9_-]*")


def _b64_sha256(text: str, length: int) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")[:length]


def connection_id(ticket: str) -> str:
    """The id of the connection a ticket opens: 16 URL-safe characters of a hash of it.

    Derived, not drawn, so that the redeem (which writes it into the tombstone) and
    the adapter (which registers the connection under it) agree without passing it.
    """
    return _b64_sha256(f"connection:{ticket}", 16)


def client_fingerprint(client_ip: str | None) -> str | None:
    """8 characters of a hash of the client address (canonical form), or ``None``.

    Enough to tell "the same client" from "another one"; not a way to hide an
    address (an IPv4 hash is quick to reverse by brute force), which is why it is
    only ever compared, never shown.
    """
    if not client_ip:
        return None
    return _b64_sha256(f"client:{canonical_ip(client_ip) or client_ip}", 8)


@dataclass(frozen=True, slots=True)
class Tombstone:
    """A decoded tombstone (see the module docstring for the fields)."""

    first_used_ms: int
    client: str | None
    subject: str | None = None
    session: str | None = None


def encode_tombstone(tombstone: Tombstone) -> bytes:
    """The tombstone as stored: compact JSON, the same bytes ``json.dumps`` would give.

    Written out by hand (every redeem writes two): the text fields our own code
    makes are URL-safe base64, which needs no escaping; anything else goes through
    ``json.dumps``."""
    fields = (tombstone.client, tombstone.subject, tombstone.session)
    texts = ",".join(_json_text(value) for value in fields)
    return f"[{TOMBSTONE_VERSION},{int(tombstone.first_used_ms)},{texts}]".encode("ascii")


def _json_text(value: str | None) -> str:
    if value is None:
        return "null"
    if _URL_SAFE.fullmatch(value):
        return f'"{value}"'
    return json.dumps(value)


def is_tombstone(raw: bytes | str) -> bool:
    """Whether a stored value is a tombstone (cheap: records never start with ``[0,``)."""
    prefix = raw[:3]
    return prefix in (b"[0,", "[0,")


def _optional_text(value: object) -> bool:
    return value is None or isinstance(value, str)


def decode_tombstone(raw: bytes | str) -> Tombstone:
    """Parse a tombstone; ``ValueError`` on anything else."""
    try:
        item: Any = json.loads(raw)
    except RecursionError:
        raise ValueError("unknown tombstone format") from None
    if (
        not isinstance(item, list)
        or len(item) != _LENGTH
        or type(item[0]) is not int
        or item[0] != TOMBSTONE_VERSION
    ):
        raise ValueError("unknown tombstone format")
    _, first_ms, client, subject, session = item
    if (
        type(first_ms) is not int
        or not -_MAX_MILLIS <= first_ms <= _MAX_MILLIS
        or not all(_optional_text(v) for v in (client, subject, session))
    ):
        raise ValueError("malformed tombstone")
    return Tombstone(first_ms, client, subject, session)


def first_use(client_ip: str | None, *, now: float) -> Tombstone:
    """The tombstone a redeem writes before it knows the record."""
    return Tombstone(round(now * 1000), client_fingerprint(client_ip))


def settled(tombstone: Tombstone, claims: Claims) -> Tombstone:
    """The tombstone once the record was accepted: with the subject and session hashes."""
    return Tombstone(
        tombstone.first_used_ms,
        tombstone.client,
        subject_id(claims.subject),
        session_hash(claims.session) if claims.session else None,
    )


@dataclass(frozen=True, slots=True)
class Replay:
    """What a replayed ticket tells: for logs, metrics, the policy and the webhook.

    ``action`` is what the replay policy did and ``retry`` whether it counted as a
    same-client retry within the grace (:mod:`ticketd.replay`); both are filled in by
    the verifier.
    """

    since_first_use_ms: int
    same_client: bool
    connection: str
    subject: str | None
    session: str | None
    action: str = "none"
    retry: bool = False


def replay_of(
    tombstone: Tombstone, client_ip: str | None, *, now: float, connection: str
) -> Replay:
    """The replay a tombstone reveals to a redeem from ``client_ip`` at ``now``
    (``connection``: :func:`connection_id` of the replayed ticket).

    "Same client" needs both addresses: an unknown one is never the same.
    """
    fingerprint = client_fingerprint(client_ip)
    return Replay(
        since_first_use_ms=max(0, round(now * 1000) - tombstone.first_used_ms),
        same_client=fingerprint is not None and fingerprint == tombstone.client,
        connection=connection,
        subject=tombstone.subject,
        session=tombstone.session,
    )
