"""Writing and reading revocation state: :class:`Revoker` and :class:`BlockingRevoker`.

A revocation is two commands (``docs/PROTOCOL.md`` section 6)::

    SET  P rv:{S}:...  value  PX <session max age>
    XADD P revocations MAXLEN ~ 10000 * v 1 kind ... at <ms>

The state is written first and is the truth; the event only makes closing fast.
On standalone Redis and Sentinel both go in one pipeline on one connection, so
Redis runs them in that order. On a Cluster the two keys live on different nodes
and a pipeline sends to them concurrently, so the ``SET`` is awaited before the
``XADD``: a consumer that has seen the event can then rely on any later state read
seeing the state (which is what makes a revocation racing a handshake safe).

:func:`check_revoked` / :func:`check_revoked_blocking` read the state of one
target with a single ``MGET`` (one slot: all keys share the hash tag ``{S}``).
Every store failure is :class:`~ticketd.exceptions.StoreUnavailable`; an
unreadable marker counts as revoked (fail closed). :class:`StateRead` is the same
read as data, for a caller that sends the ``MGET`` in a round trip of its own (the
mint's plan, :mod:`ticketd.service.mintplan`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import RedisClusterException, RedisError

from .exceptions import StoreOperation, StoreUnavailable
from .issuer import DEFAULT_KEY_PREFIX
from .revocation import (
    STREAM_MAXLEN,
    Revocation,
    Target,
    decode_state,
    encode_event,
    is_revoked,
    state_keys,
    state_value,
    stream_key,
)
from .roundtrip import RoundTrip
from .tickets import Subject

__all__ = [
    "DEFAULT_TTL",
    "BlockingRevoker",
    "Revoker",
    "StateRead",
    "check_revoked",
    "check_revoked_blocking",
]

_logger = logging.getLogger("ticketd.revocation")

DEFAULT_TTL = 14 * 24 * 3600.0
"""Seconds a marker lives: set it to the session max age (a longer session outlives it)."""

_ERRORS = (RedisError, RedisClusterException, OSError, asyncio.TimeoutError)
_BLOCKING_ERRORS = (RedisError, RedisClusterException, OSError)


def _is_cluster(client: object) -> bool:
    return hasattr(client, "get_node_from_key")


def _set_command(revocation: Revocation, prefix: str, ttl_ms: int) -> tuple[Any, ...]:
    return ("SET", revocation.state_key(prefix), state_value(revocation), "PX", ttl_ms)


def _xadd_command(revocation: Revocation, prefix: str) -> tuple[Any, ...]:
    fields = [part for pair in encode_event(revocation).items() for part in pair]
    return ("XADD", stream_key(prefix), "MAXLEN", "~", STREAM_MAXLEN, "*", *fields)


class _RevokerBase:
    def __init__(self, *, key_prefix: str, ttl: float, clock: Callable[[], float]) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive (the session max age, in seconds)")
        self.key_prefix = key_prefix
        self.ttl_ms = round(ttl * 1000)
        self.clock = clock

    def _revocation(
        self,
        subject: Subject,
        session: str | None,
        except_session: str | None,
        connection: str | None,
    ) -> Revocation:
        return Revocation.of(
            subject,
            at_ms=round(self.clock() * 1000),
            session=session,
            except_session=except_session,
            connection=connection,
        )

    def _log(self, revocation: Revocation, reason: str | None) -> None:
        _logger.info(
            "revoked kind=%s subject=%s reason=%s",
            revocation.kind,
            revocation.subject[:8],
            (reason or "-")[:64],
        )


class Revoker(_RevokerBase):
    """Revoke subjects, sessions and connections (asyncio).

    ``client`` is a redis-py asyncio client (standalone, Sentinel master, Cluster)
    or fakeredis; ``ttl`` the session max age in seconds::

        revoker = Revoker(redis_client, ttl=14 * 24 * 3600)
        await revoker.revoke("user-42")                           # every session
        await revoker.revoke("user-42", except_session=current)   # log out other devices
        await revoker.revoke("user-42", session=session_id)       # one session
        await revoker.revoke("user-42", connection=connection_id) # one socket
    """

    def __init__(
        self,
        client: Any,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        ttl: float = DEFAULT_TTL,
        deadline: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(key_prefix=key_prefix, ttl=ttl, clock=clock)
        self.client = client
        self.deadline = deadline

    async def revoke(
        self,
        subject: Subject,
        *,
        session: str | None = None,
        except_session: str | None = None,
        connection: str | None = None,
        reason: str | None = None,
    ) -> Revocation:
        """Write the state, then append the event. ``ValueError``/``TypeError`` for bad
        arguments (before any Redis call); :class:`StoreUnavailable` if Redis failed,
        in which case the revocation may or may not have been stored: retry it."""
        revocation = self._revocation(subject, session, except_session, connection)
        return await self.write(revocation, reason)

    async def write(self, revocation: Revocation, reason: str | None = None) -> Revocation:
        """Write a :class:`~ticketd.revocation.Revocation` already built (and hashed):
        the state, then the event. What :meth:`revoke` does after validating."""
        set_command = _set_command(revocation, self.key_prefix, self.ttl_ms)
        xadd_command = _xadd_command(revocation, self.key_prefix)
        try:
            async with asyncio.timeout(self.deadline):
                if _is_cluster(self.client):
                    await self.client.execute_command(*set_command)
                    await self.client.execute_command(*xadd_command)
                else:
                    pipe = self.client.pipeline(transaction=False)
                    pipe.execute_command(*set_command)
                    pipe.execute_command(*xadd_command)
                    await pipe.execute()
        except _ERRORS as exc:
            raise StoreUnavailable.from_error(StoreOperation.REVOKE, exc) from exc
        self._log(revocation, reason)
        return revocation


class BlockingRevoker(_RevokerBase):
    """:class:`Revoker` for threaded code, over a blocking redis-py client."""

    def __init__(
        self,
        client: Any,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(key_prefix=key_prefix, ttl=ttl, clock=clock)
        self.client = client

    def revoke(
        self,
        subject: Subject,
        *,
        session: str | None = None,
        except_session: str | None = None,
        connection: str | None = None,
        reason: str | None = None,
    ) -> Revocation:
        """Blocking :meth:`Revoker.revoke`."""
        revocation = self._revocation(subject, session, except_session, connection)
        return self.write(revocation, reason)

    def write(self, revocation: Revocation, reason: str | None = None) -> Revocation:
        """Blocking :meth:`Revoker.write`."""
        set_command = _set_command(revocation, self.key_prefix, self.ttl_ms)
        xadd_command = _xadd_command(revocation, self.key_prefix)
        try:
            if _is_cluster(self.client):
                self.client.execute_command(*set_command)
                self.client.execute_command(*xadd_command)
            else:
                pipe = self.client.pipeline(transaction=False)
                pipe.execute_command(*set_command)
                pipe.execute_command(*xadd_command)
                pipe.execute()
        except _BLOCKING_ERRORS as exc:
            raise StoreUnavailable.from_error(StoreOperation.REVOKE, exc) from exc
        self._log(revocation, reason)
        return revocation


def _decide(target: Target, values: Any) -> bool:
    try:
        return is_revoked(decode_state(target, values), target)
    except (ValueError, TypeError):
        _logger.error(
            "revocation marker unreadable subject=%s: treated as revoked", target.subject[:8]
        )
        return True


@dataclass(frozen=True, slots=True)
class StateRead:
    """One target's revocation state read (sans-I/O): the ``MGET`` and how to read its reply."""

    key_prefix: str
    target: Target
    command: tuple[Any, ...] = field(init=False, compare=False)
    """``MGET`` of :func:`~ticketd.revocation.state_keys` (one slot on a Cluster)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "command", ("MGET", *state_keys(self.key_prefix, self.target)))

    def revoked(self, values: Any) -> bool:
        """Whether the ``MGET`` reply says revoked; an unreadable marker does (fail closed)."""
        return _decide(self.target, values)


_TRIPS: weakref.WeakKeyDictionary[Any, dict[float, tuple[Any, RoundTrip]]]
_TRIPS = weakref.WeakKeyDictionary()


def _round_trip(client: Any, deadline: float) -> RoundTrip | None:
    """The client's shared :class:`RoundTrip` for this loop and deadline (``None``: a
    client without pipelines, or one that cannot be weakly referenced)."""
    if not callable(getattr(client, "pipeline", None)):
        return None
    try:
        trips = _TRIPS.setdefault(client, {})
    except TypeError:
        return None
    loop = asyncio.get_running_loop()
    known = trips.get(deadline)
    if known is None or known[0] is not loop:
        trip = RoundTrip(client, deadline=deadline, operation=StoreOperation.REVOCATION_CHECK)
        known = trips[deadline] = (loop, trip)
    return known[1]


async def check_revoked(
    client: Any, key_prefix: str, target: Target, *, deadline: float = 1.0
) -> bool:
    """Whether ``target`` is revoked, from one ``MGET``; :class:`StoreUnavailable` on failure.

    Concurrent checks on the same client share one pipeline per event-loop iteration
    (:class:`~ticketd.roundtrip.RoundTrip`): a sweep, or many handshakes at once, cost
    one round trip instead of one each.
    """
    command = ("MGET", *state_keys(key_prefix, target))
    trip = _round_trip(client, deadline)
    try:
        if trip is None:
            async with asyncio.timeout(deadline):
                values = await client.execute_command(*command)
        else:
            (values,) = await trip.send([command])
            if isinstance(values, Exception):
                raise values
    except StoreUnavailable:
        raise
    except _ERRORS as exc:
        raise StoreUnavailable.from_error(StoreOperation.REVOCATION_CHECK, exc) from exc
    return _decide(target, values)


def check_revoked_blocking(client: Any, key_prefix: str, target: Target) -> bool:
    """Blocking :func:`check_revoked` (the deadline is the client's socket timeout)."""
    try:
        values = client.execute_command("MGET", *state_keys(key_prefix, target))
    except _BLOCKING_ERRORS as exc:
        raise StoreUnavailable.from_error(StoreOperation.REVOCATION_CHECK, exc) from exc
    return _decide(target, values)
