"""Connections that end with their session: :class:`ConnectionLifetime`.

A ticket minted from a session cookie carries the session's expiry
(``Claims.session_expires_at``: signing time plus max age). When an adapter accepts
the connection it asks :meth:`ConnectionLifetime.arm` to close it with **4401**
(:data:`~ticketd.registry.SESSION_ENDED_CLOSE_CODE`) at that time, or after
``max_lifetime`` seconds if that comes first; the browser client then re-mints, and
the mint decides whether the session still holds. This works with or without a
:class:`~ticketd.liveness.RevocationWatch`.

The close comes a little **before** the deadline, never after: a random
``jitter`` of up to ``min(MAX_JITTER, JITTER_FRACTION * lifetime left)`` seconds,
so that the sockets of sessions signed in the same second (or opened by the same
deploy) do not reconnect in one storm. Claims without ``session_expires_at`` (v1
records, library mints without a session) get only the ``max_lifetime`` timer, or
none.

The decision (:func:`deadline_of`) is pure; :class:`ConnectionLifetime` only runs it
on an event loop's timers (``loop.call_later``; a threaded server's connections share
one background loop). A timer sleeps at most :data:`RECHECK_INTERVAL` seconds at a
time and drops itself when the connection has ended, so an adapter without an end
hook holds nothing for the length of a session; where the adapter knows the end, it
cancels the timer at once (:meth:`~ticketd.registry.LiveConnection.end`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .registry import SESSION_ENDED_CLOSE_CODE, LiveConnection
from .tickets import Claims

__all__ = [
    "JITTER_FRACTION",
    "MAX_JITTER",
    "MAX_LIFETIME",
    "RECHECK_INTERVAL",
    "SESSION_EXPIRED",
    "ConnectionLifetime",
    "Deadline",
    "Jitter",
    "LifetimeObserver",
    "deadline_of",
]

_logger = logging.getLogger("ticketd.lifetime")

SESSION_EXPIRED = "session_expired"
MAX_LIFETIME = "max_lifetime"
MAX_JITTER = 5.0
"""Seconds: the most a close comes before its deadline."""
JITTER_FRACTION = 0.1
"""And at most this share of the lifetime left when the connection was accepted."""
RECHECK_INTERVAL = 60.0
"""Seconds a timer sleeps at most before it looks at the clock and the connection again."""

_REASONS = {SESSION_EXPIRED: "session ended", MAX_LIFETIME: "max lifetime"}

Jitter = Callable[[float], float]
"""``jitter(bound)``: seconds in ``[0, bound]`` to close before the deadline."""


def _uniform(bound: float) -> float:
    return random.uniform(0.0, bound)  # noqa: S311 - spreading reconnects, not a secret


class LifetimeObserver:
    """Hooks for metrics (see :mod:`ticketd.revocation_metrics`); no-ops here.

    ``cause`` is ``session_expired`` or ``max_lifetime``.
    """

    def closed(self, cause: str) -> None:
        """A connection was closed with 4401 at the end of its lifetime."""


@dataclass(frozen=True, slots=True)
class Deadline:
    """When (epoch seconds, jitter applied) and why a connection is to be closed."""

    at: float
    cause: str


def deadline_of(
    claims: Claims, now: float, *, max_lifetime: float | None, jitter: Jitter = _uniform
) -> Deadline | None:
    """The close of a connection accepted at ``now``: the session's expiry or
    ``now + max_lifetime``, whichever is first, minus the jitter; ``None`` for neither."""
    ends: list[tuple[float, str]] = []
    if claims.session_expires_at is not None:
        ends.append((claims.session_expires_at, SESSION_EXPIRED))
    if max_lifetime is not None:
        ends.append((now + max_lifetime, MAX_LIFETIME))
    if not ends:
        return None
    end, cause = min(ends)
    bound = min(MAX_JITTER, JITTER_FRACTION * max(0.0, end - now))
    early = min(max(jitter(bound), 0.0), bound)  # before the deadline, never after
    return Deadline(at=end - early, cause=cause)


class ConnectionLifetime:
    """Closes accepted connections with 4401 at the session's expiry (or ``max_lifetime``).

    Every adapter takes one (``lifetime=``); without it, each uses a default instance,
    which closes at the session's expiry only::

        lifetime = ConnectionLifetime(max_lifetime=3600,
                                      observer=PrometheusLifetimeObserver(registry))
        serve(handler, process_response=ticket_auth(verifier, lifetime=lifetime), ...)
    """

    def __init__(
        self,
        *,
        max_lifetime: float | None = None,
        observer: LifetimeObserver | None = None,
        clock: Callable[[], float] = time.time,
        jitter: Jitter = _uniform,
    ) -> None:
        if max_lifetime is not None and not max_lifetime > 0:
            raise ValueError("max_lifetime must be a positive number of seconds")
        self.max_lifetime = max_lifetime
        self.observer = observer or LifetimeObserver()
        self.clock = clock
        self.jitter = jitter
        self.closed: dict[str, int] = {}
        """Connections closed, by cause (what tests read)."""

    def applies(self, claims: Claims) -> bool:
        """Whether a connection with ``claims`` will have a deadline (no jitter drawn)."""
        return claims.session_expires_at is not None or self.max_lifetime is not None

    def deadline(self, claims: Claims) -> Deadline | None:
        return deadline_of(claims, self.clock(), max_lifetime=self.max_lifetime, jitter=self.jitter)

    def arm(self, entry: LiveConnection, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Schedule the close of ``entry`` on ``loop`` (default: the running loop, or the
        shared background loop from a thread without one); :meth:`LiveConnection.end`
        cancels it."""
        deadline = self.deadline(entry.claims)
        if deadline is None:
            return
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = _background_loop()
        timer = _Timer(self, entry, deadline, loop)
        entry.on_end(timer.cancel)
        loop.call_soon_threadsafe(timer.wake)

    def _expire(self, entry: LiveConnection, cause: str) -> None:
        if not entry.close(SESSION_ENDED_CLOSE_CODE, _REASONS[cause]):
            return  # revoked or closed already
        self.closed[cause] = self.closed.get(cause, 0) + 1
        self.observer.closed(cause)
        _logger.info(
            "connection closed code=%d cause=%s subject=%s",
            SESSION_ENDED_CLOSE_CODE,
            cause,
            entry.target.subject[:8],
        )


class _Timer:
    """One connection's close, re-armed every :data:`RECHECK_INTERVAL` at most."""

    __slots__ = ("_cancelled", "_handle", "deadline", "entry", "lifetime", "loop")

    def __init__(
        self,
        lifetime: ConnectionLifetime,
        entry: LiveConnection,
        deadline: Deadline,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.lifetime, self.entry, self.deadline, self.loop = lifetime, entry, deadline, loop
        self._handle: asyncio.TimerHandle | None = None
        self._cancelled = False

    def wake(self) -> None:
        self._handle = None
        if self._cancelled or self.entry.gone or self.entry.closing is not None:
            return
        left = self.deadline.at - self.lifetime.clock()
        if left > 0:
            self._handle = self.loop.call_later(min(left, RECHECK_INTERVAL), self.wake)
            return
        self.lifetime._expire(self.entry, self.deadline.cause)

    def cancel(self) -> None:
        self._cancelled = True
        with contextlib.suppress(RuntimeError):  # the loop has closed: nothing to cancel
            self.loop.call_soon_threadsafe(self._drop)

    def _drop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


_background: asyncio.AbstractEventLoop | None = None
_background_lock = threading.Lock()


def _background_loop() -> asyncio.AbstractEventLoop:
    """One daemon thread's event loop for the timers of threaded servers."""
    global _background
    with _background_lock:
        if _background is None:
            _background = asyncio.new_event_loop()
            threading.Thread(
                target=_background.run_forever, name="ticketd-lifetime", daemon=True
            ).start()
        return _background
