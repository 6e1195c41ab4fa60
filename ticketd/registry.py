"""The live-connection registry of one WebSocket process, and the close codes.

:class:`LiveConnections` holds every open (or opening) connection by subject; each
:class:`LiveConnection` carries its claims, its revocation :class:`~ticketd.revocation.Target`
and the adapter's :data:`Closer`. What closes them — a revocation
(:class:`~ticketd.liveness.RevocationWatch`), the end of the session
(:class:`~ticketd.lifetime.ConnectionLifetime`) — asks the entry to close; the entry
carries the close out once, through the adapter's closer, or on attach if the adapter
had not attached one yet. When the connection ends the adapter calls
:meth:`LiveConnection.end`, which runs what was registered with
:meth:`LiveConnection.on_end` (forget it in the registry, cancel its timer). No I/O here.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable

from .revocation import Revocation, Target, matches, target_of
from .tickets import Claims

__all__ = [
    "CLOSE_TIMEOUT",
    "REVOKED_CLOSE_CODE",
    "SESSION_ENDED_CLOSE_CODE",
    "STALE_CLOSE_CODE",
    "Closer",
    "LiveConnection",
    "LiveConnections",
]

REVOKED_CLOSE_CODE = 4403
SESSION_ENDED_CLOSE_CODE = 4401
"""The session (or the connection's maximum lifetime) ended: the client re-mints."""
STALE_CLOSE_CODE = 1012
CLOSE_TIMEOUT = 1.0
"""Seconds the closing handshake may take before the transport is aborted."""

Closer = Callable[[int, str], None]
"""Schedules a close with ``(code, reason)``: must not block, may be called from any thread."""


class LiveConnection:
    """One registered connection. ``id`` is what ``revoke(connection=...)`` takes."""

    __slots__ = (
        "_closer",
        "_ended",
        "_gone",
        "_lock",
        "_on_end",
        "_pending",
        "claims",
        "closing",
        "id",
        "target",
    )

    def __init__(self, claims: Claims, connection_id: str) -> None:
        self.id = connection_id
        self.claims = claims
        self.target: Target = target_of(claims, connection_id)
        self.closing: str | None = None
        """Why a close was requested (``"revoked"``, ``"stale"``, ``"session ended"``,
        ``"max lifetime"``), or ``None``."""
        self._closer: Closer | None = None
        self._gone: Callable[[], bool] | None = None
        self._pending: tuple[int, str] | None = None
        self._on_end: list[Callable[[], None]] = []
        self._ended = False
        self._lock = threading.Lock()

    @classmethod
    def of(cls, claims: Claims, connection_id: str | None = None) -> LiveConnection:
        """A new connection (not registered anywhere yet) under ``connection_id``, or a
        fresh random id."""
        return cls(claims, connection_id or secrets.token_urlsafe(12))

    def attach(self, closer: Closer, gone: Callable[[], bool] | None = None) -> None:
        """Give the connection its closer (and a "has it ended" test); a close requested
        before now is carried out at once."""
        with self._lock:
            self._closer, self._gone = closer, gone
            pending, self._pending = self._pending, None
        if pending is not None:
            closer(*pending)

    @property
    def gone(self) -> bool:
        return self._ended or (self._gone is not None and self._gone())

    def on_end(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once when the connection ends (at once if it has ended)."""
        with self._lock:
            ended = self._ended
            if not ended:
                self._on_end.append(callback)
        if ended:
            callback()

    def end(self) -> None:
        """The adapter says the connection has ended: run the :meth:`on_end` callbacks once."""
        with self._lock:
            callbacks, self._on_end = self._on_end, []
            self._ended = True
        for callback in callbacks:
            callback()

    def close(self, code: int, reason: str) -> bool:
        """Request a close; ``False`` if one was requested already."""
        with self._lock:
            if self.closing is not None:
                return False
            self.closing = reason
            closer = self._closer
            if closer is None:
                self._pending = (code, reason)
        if closer is not None:
            closer(code, reason)
        return True


class LiveConnections:
    """The registry: live connections of this process by subject hash (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_subject: dict[str, set[LiveConnection]] = {}

    def add(self, claims: Claims, connection_id: str | None = None) -> LiveConnection:
        """Register a connection under ``connection_id`` (the ticket's, which a replay's
        ``close_first`` revokes; :func:`~ticketd.tombstones.connection_id`), or a new one."""
        entry = LiveConnection.of(claims, connection_id)
        with self._lock:
            self._by_subject.setdefault(entry.target.subject, set()).add(entry)
        return entry

    def discard(self, entry: LiveConnection) -> None:
        with self._lock:
            peers = self._by_subject.get(entry.target.subject)
            if peers is not None:
                peers.discard(entry)
                if not peers:
                    del self._by_subject[entry.target.subject]

    def matching(self, revocation: Revocation) -> list[LiveConnection]:
        with self._lock:
            peers = list(self._by_subject.get(revocation.subject, ()))
        return [e for e in peers if not e.gone and matches(revocation, e.target)]

    def snapshot(self) -> list[LiveConnection]:
        with self._lock:
            return [e for peers in self._by_subject.values() for e in peers]

    def prune(self) -> int:
        """Forget connections whose adapter says they have ended; returns how many."""
        gone = [e for e in self.snapshot() if e.gone]
        for entry in gone:
            self.discard(entry)
        return len(gone)

    def __len__(self) -> int:
        with self._lock:
            return sum(len(peers) for peers in self._by_subject.values())
