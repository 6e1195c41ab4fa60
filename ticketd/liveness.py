"""Keeping live sockets honest: the per-process registry, the revocation feed, the sweep.

One :class:`RevocationWatch` per WebSocket process. It holds

- :class:`~ticketd.registry.LiveConnections`, every open (or opening) connection
  of this process by subject, session and connection id;
- the **feed**: ``XREAD BLOCK`` on the revocation stream from the last id seen
  (resumed after a dropped connection; a trimmed stream, where entries after that
  id may be gone, triggers a **resync**: every live connection is re-checked
  against the state). Works with standalone, Sentinel and Cluster clients: the
  stream is one key, and the block time stays under the client's socket timeout;
- the **sweep**, a jittered periodic re-check of every live connection against the
  state, which closes whatever a missed event left open (and counts it);
- the feed lag (seconds since the feed last heard from Redis) and a stale bound:
  :attr:`RevocationWatch.ready` turns false past it, and with
  ``close_when_stale=True`` live connections are closed with 1012.

Adapters call :meth:`RevocationWatch.admit` after the ticket was redeemed: it
registers the connection **before** reading the state, so a revocation racing
the handshake is caught by one or the other (the revoker writes the state before
the event). A close requested before the adapter attached its closer is kept
and carried out on attach.

The close itself belongs to the adapter (:mod:`ticketd.integrations._live`):
4403 for a revocation, then the transport is aborted if the closing handshake
has not finished within :data:`~ticketd.registry.CLOSE_TIMEOUT`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import RedisClusterException, RedisError, ResponseError

from .connection import client_socket_timeout
from .exceptions import Reason, StoreUnavailable, TicketRejected
from .issuer import DEFAULT_KEY_PREFIX
from .registry import REVOKED_CLOSE_CODE, STALE_CLOSE_CODE, LiveConnection, LiveConnections
from .revocation import Revocation, decode_event, stream_key
from .revoker import check_revoked
from .tickets import Claims

__all__ = [
    "BlockingRevocationWatch",
    "RevocationWatch",
    "WatchObserver",
    "WatchStats",
]

_logger = logging.getLogger("ticketd.revocation")

_FEED_ERRORS = (RedisError, RedisClusterException, OSError, asyncio.TimeoutError)
_READ_COUNT = 500
_SWEEP_CONCURRENCY = 32


class WatchObserver:
    """Hooks for metrics; every method is a no-op here (see :mod:`ticketd.revocation_metrics`).

    ``cause`` is one of ``push``, ``sweep``, ``resync``, ``stale``.
    """

    def closed(self, cause: str) -> None:
        """A connection was closed."""

    def propagation(self, seconds: float) -> None:
        """An event closed a connection this long after the revocation was made."""

    def gap(self) -> None:
        """The stream was trimmed past the last id seen: a resync follows."""

    def feed_error(self) -> None:
        """A read of the feed failed (it is retried from the last id)."""

    def feed_lag(self, seconds: float) -> None:
        """Seconds since the feed last heard from Redis (updated every tick)."""

    def swept(self, checked: int, closed: int) -> None:
        """A sweep re-checked ``checked`` connections and closed ``closed``."""


@dataclass
class WatchStats:
    """Plain counters of one watch (also what tests and ``make bench`` read)."""

    closed: dict[str, int] = field(default_factory=dict)
    propagation: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))
    gaps: int = 0
    feed_errors: int = 0
    sweeps: int = 0
    events: int = 0


def _stream_id(value: object) -> tuple[int, int]:
    text = value.decode() if isinstance(value, bytes) else str(value)
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


class RevocationWatch:
    """Registry, feed, sweep and stale check of one WebSocket process (asyncio).

    ``client`` reads the state (``MGET``); ``feed_client`` (default: ``client``)
    reads the stream. Both are redis-py asyncio clients (standalone, Sentinel,
    Cluster) or fakeredis. ``sweep_interval`` seconds (jittered ±25 %) between
    sweeps; past ``stale_after`` seconds without hearing from the feed the watch
    is not :attr:`ready`, and with ``close_when_stale`` its connections get 1012.

    The feed starts with the first :meth:`admit` (or :meth:`start`)::

        watch = RevocationWatch(redis_client, sweep_interval=30)
        serve(handler, process_request=ticket_auth(verifier, watch=watch), ...)
    """

    def __init__(
        self,
        client: Any,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        feed_client: Any = None,
        sweep_interval: float = 30.0,
        stale_after: float = 10.0,
        close_when_stale: bool = False,
        deadline: float = 1.0,
        observer: WatchObserver | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if sweep_interval <= 0 or stale_after <= 0:
            raise ValueError("sweep_interval and stale_after must be positive")
        self.client = client
        self.feed_client = feed_client if feed_client is not None else client
        self.key_prefix = key_prefix
        self.sweep_interval = sweep_interval
        self.stale_after = stale_after
        self.close_when_stale = close_when_stale
        self.deadline = deadline
        self.observer = observer or WatchObserver()
        self.clock = clock
        self.connections = LiveConnections()
        self.stats = WatchStats()
        self.last_id: str | None = None
        """The id of the last stream entry seen (``None`` before the feed started)."""
        self._heard = time.monotonic()
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stale_closed = False
        self._stopping = False
        self._block_ms = int(max(10.0, min(1000.0, client_socket_timeout(self.feed_client) * 500)))

    # -- life cycle ----------------------------------------------------------------

    def start(self) -> None:
        """Start the feed and the sweep in the running loop (idempotent)."""
        if self._tasks:
            return
        self._loop = asyncio.get_running_loop()
        self._heard = time.monotonic()
        self._tasks = [
            self._loop.create_task(self._feed(), name="ticketd-revocation-feed"),
            self._loop.create_task(self._ticks(), name="ticketd-revocation-sweep"),
        ]

    async def aclose(self) -> None:
        tasks, self._tasks = self._tasks, []
        self._stopping = True
        for task in tasks:
            task.cancel()
        if tasks:
            # Some clients (fakeredis) finish a blocking read before seeing the cancel.
            await asyncio.wait(tasks, timeout=self._block_ms / 1000 + 1)
        self._stopping = False

    async def __aenter__(self) -> RevocationWatch:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- connections ---------------------------------------------------------------

    async def admit(self, claims: Claims, connection_id: str | None = None) -> LiveConnection:
        """Register a redeemed connection (under ``connection_id``, else a new id), then
        check the state (that order).

        Raises :class:`~ticketd.TicketRejected` (``revoked``) or
        :class:`~ticketd.StoreUnavailable`; the connection is then unregistered.
        """
        self.start()
        entry = self.connections.add(claims, connection_id)
        try:
            revoked = await check_revoked(
                self.client, self.key_prefix, entry.target, deadline=self.deadline
            )
        except StoreUnavailable:
            self.connections.discard(entry)
            raise
        if revoked:
            self.connections.discard(entry)
            raise TicketRejected(Reason.REVOKED)
        return entry

    def forget(self, entry: LiveConnection) -> None:
        """The connection has ended."""
        self.connections.discard(entry)

    # -- health --------------------------------------------------------------------

    @property
    def feed_lag(self) -> float:
        """Seconds since the feed last heard from Redis."""
        return time.monotonic() - self._heard

    @property
    def ready(self) -> bool:
        """``False`` once the feed has been silent for longer than ``stale_after``."""
        return self.feed_lag <= self.stale_after

    # -- closing -------------------------------------------------------------------

    def _close(self, entry: LiveConnection, cause: str, code: int = REVOKED_CLOSE_CODE) -> bool:
        if not entry.close(code, "revoked" if code == REVOKED_CLOSE_CODE else cause):
            return False
        self.stats.closed[cause] = self.stats.closed.get(cause, 0) + 1
        self.observer.closed(cause)
        _logger.info(
            "connection closed code=%d cause=%s subject=%s", code, cause, entry.target.subject[:8]
        )
        return True

    def apply(self, revocation: Revocation) -> int:
        """Close the live connections an event revokes; returns how many."""
        closed = 0
        now_ms = self.clock() * 1000
        for entry in self.connections.matching(revocation):
            if self._close(entry, "push"):
                closed += 1
                seconds = max(0.0, (now_ms - revocation.at_ms) / 1000)
                self.stats.propagation.append(seconds)
                self.observer.propagation(seconds)
        return closed

    async def sweep(self, cause: str = "sweep") -> int:
        """Re-check every live connection against the state; close the revoked ones."""
        self.connections.prune()
        entries = [e for e in self.connections.snapshot() if e.closing is None]
        closed = 0
        for start in range(0, len(entries), _SWEEP_CONCURRENCY):
            chunk = entries[start : start + _SWEEP_CONCURRENCY]
            results = await asyncio.gather(
                *(
                    check_revoked(self.client, self.key_prefix, e.target, deadline=self.deadline)
                    for e in chunk
                ),
                return_exceptions=True,
            )
            for entry, result in zip(chunk, results, strict=True):
                if result is True and self._close(entry, cause):
                    closed += 1
        self.stats.sweeps += 1
        self.observer.swept(len(entries), closed)
        return closed

    # -- the feed ------------------------------------------------------------------

    async def _tail_id(self) -> str:
        entries = await self.feed_client.xrevrange(stream_key(self.key_prefix), count=1)
        if not entries:
            return "0-0"
        raw = entries[0][0]
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    async def _trimmed_past(self, last_id: str) -> bool:
        """Whether entries after ``last_id`` may have been trimmed away."""
        try:
            info = await self.feed_client.xinfo_stream(stream_key(self.key_prefix))
        except ResponseError:  # no such key: gone (deleted) if we had read from it
            return last_id != "0-0"
        seen = _stream_id(last_id)
        deleted = info.get("max-deleted-entry-id")
        if deleted is not None and _stream_id(deleted) > seen:
            return True
        first = info.get("first-entry")
        if first:  # the oldest entry left is newer than what we saw: some may be gone
            return _stream_id(first[0]) > seen
        # Empty: anything added after what we saw was trimmed away.
        generated = info.get("last-generated-id")
        return generated is not None and _stream_id(generated) > seen

    async def _read(self, last_id: str) -> list[Any]:
        reply = await self.feed_client.xread(
            {stream_key(self.key_prefix): last_id}, count=_READ_COUNT, block=self._block_ms
        )
        self._heard = time.monotonic()
        if isinstance(reply, dict):  # RESP3
            return [entry for entries in reply.values() for entry in entries[0]]
        return [entry for _, entries in reply or () for entry in entries]

    async def _feed(self) -> None:
        pause = 0.05
        check_gap = False
        while not self._stopping:
            try:
                if self.last_id is None:
                    self.last_id = await self._tail_id()
                elif check_gap:
                    if await self._trimmed_past(self.last_id):
                        self.stats.gaps += 1
                        self.observer.gap()
                        _logger.warning("revocation stream trimmed past the last id seen: resync")
                        await self.sweep("resync")
                    check_gap = False
                entries = await self._read(self.last_id)
            except asyncio.CancelledError:
                raise
            except _FEED_ERRORS as exc:
                self.stats.feed_errors += 1
                self.observer.feed_error()
                _logger.warning("revocation feed read failed: %s", type(exc).__name__)
                check_gap = True
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)
                continue
            pause = 0.05
            for raw_id, fields in entries:
                self.last_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
                self.stats.events += 1
                revocation = decode_event(fields)
                if revocation is not None:
                    self.apply(revocation)
            check_gap = check_gap or len(entries) >= _READ_COUNT

    async def _ticks(self) -> None:
        jitter = random.Random()  # noqa: S311 - spreading sweeps needs no secrecy
        due = time.monotonic() + self.sweep_interval * jitter.uniform(0.75, 1.25)
        tick = min(0.25, self.sweep_interval / 4)
        while True:
            await asyncio.sleep(tick)
            lag = self.feed_lag
            self.observer.feed_lag(lag)
            if lag > self.stale_after:
                if self.close_when_stale and not self._stale_closed:
                    self._stale_closed = True
                    _logger.warning("revocation feed stale for %.1fs: closing with 1012", lag)
                    for entry in self.connections.snapshot():
                        self._close(entry, "stale", STALE_CLOSE_CODE)
            else:
                self._stale_closed = False
            if time.monotonic() >= due:
                with contextlib.suppress(Exception):
                    await self.sweep()
                due = time.monotonic() + self.sweep_interval * jitter.uniform(0.75, 1.25)


class BlockingRevocationWatch:
    """:class:`RevocationWatch` for threaded servers (``websockets.sync``).

    The watch runs in its own thread and event loop; ``client_factory`` builds
    the redis-py asyncio client(s) there (and :meth:`close` closes them), e.g.
    ``lambda: ticketd.connection.async_client(RedisOptions(url=...))``.
    :meth:`admit` blocks the calling thread for one ``MGET``.
    """

    def __init__(
        self,
        client_factory: Callable[[], Any],
        *,
        feed_client_factory: Callable[[], Any] | None = None,
        **options: Any,
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="ticketd-revocation-watch", daemon=True
        )
        self._thread.start()

        self._clients: list[Any] = []

        async def build() -> RevocationWatch:
            feed = feed_client_factory() if feed_client_factory is not None else None
            client = client_factory()
            self._clients = [c for c in (client, feed) if c is not None]
            watch = RevocationWatch(client, feed_client=feed, **options)
            watch.start()
            return watch

        self.watch: RevocationWatch = self._run(build())

    def _run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    async def _shutdown(self) -> None:
        await self.watch.aclose()
        for client in self._clients:  # built here, so closed here
            close = getattr(client, "aclose", None)
            if close is not None:
                await close()

    def admit(self, claims: Claims, connection_id: str | None = None) -> LiveConnection:
        """Blocking :meth:`RevocationWatch.admit`."""
        entry: LiveConnection = self._run(self.watch.admit(claims, connection_id))
        return entry

    def forget(self, entry: LiveConnection) -> None:
        self.watch.forget(entry)

    @property
    def ready(self) -> bool:
        return self.watch.ready

    def close(self) -> None:
        if not self._loop.is_running():
            return
        self._run(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()
