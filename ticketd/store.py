"""The ticket store: the only code that talks to Redis.

Single-key commands, so the store works unchanged on standalone Redis (6.2 or
later), Sentinel, Cluster, managed services and fakeredis:

- mint:   ``SET key record PX ttl NX`` (NX: a 256-bit collision would be a bug, not data);
- redeem: ``SET key tombstone XX GET KEEPTTL`` — atomic read-and-replace in one round
  trip: the record comes back and a tombstone (:mod:`ticketd.tombstones`) stays until
  the ticket's TTL, so a second redeem learns it is a replay. Two concurrent redeems
  of one ticket cannot both see the record. (``take(key)`` without a tombstone is the
  plain ``GETDEL``.) Then ``SET key tombstone XX KEEPTTL`` (:meth:`TicketStore.settle`,
  best effort): for an accepted record, a tombstone with the subject and session
  hashes; for a replay, the first use's tombstone back (the replay's own ``SET``
  overwrote it), so a third use still learns about the first.

Every failure (connection, timeout, an error reply such as OOM under
``maxmemory``, or the overall deadline) becomes :class:`StoreUnavailable`, which
names the operation and keeps the cause. A redeem that fails after the command was
sent fails closed: the caller gets ``StoreUnavailable`` and the ticket is probably
gone, which is the safe side.

The twins, :class:`TicketStore` (asyncio) and :class:`BlockingTicketStore`, take
the same options and differ in ``await`` only, with one exception each way: the
asyncio store coalesces concurrent commands (:mod:`ticketd.batching`) and cleans up
after failed mints, which a blocking caller never needs; the blocking store cannot
interrupt a blocking socket call, so its deadline is kept by the client's socket
timeouts, which it checks (``from_url`` sets them from the deadline).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Any, Protocol, Self, TypedDict, Unpack

from redis.exceptions import RedisClusterException, RedisError

from .batching import Command, CommandBatcher
from .connection import (
    RedisOptions,
    async_client,
    client_address,
    client_kwargs,
    sync_client,
)
from .exceptions import StoreOperation, StoreUnavailable
from .takes import acknowledged, as_bytes, replicated_take, take_command, take_options

__all__ = [
    "DEFAULT_DEADLINE",
    "MAX_ORPHANS",
    "AsyncRedisLike",
    "BlockingTicketStore",
    "StoreOptions",
    "SyncRedisLike",
    "TicketStore",
]

MAX_ORPHANS = 10_000
"""Keys of failed mints the store remembers to clean up (beyond: left to their TTL)."""

DEFAULT_DEADLINE = 1.0
"""Seconds a store operation may take in all, retries included."""

# RedisClusterException (cluster down, slots not covered) does not derive from RedisError.
_STORE_ERRORS = (RedisError, RedisClusterException, OSError, asyncio.TimeoutError)
_BLOCKING_STORE_ERRORS = (RedisError, RedisClusterException, OSError)


class StoreOptions(TypedDict, total=False):
    """The keyword options of every ``from_url``: the store's own, then :class:`RedisOptions`'.

    ``deadline`` (seconds an operation may take in all, default 1) and
    ``wait_replicas`` (replicas that must acknowledge a redeem, default 0) belong to
    the store; the others are the :class:`~ticketd.connection.RedisOptions` fields of
    the same name. ``from_url`` lowers ``connect_timeout`` and ``socket_timeout`` to
    half the deadline each when they are longer, so one connect and one read fit in it.
    """

    deadline: float
    wait_replicas: int
    cluster: bool
    sentinels: Sequence[tuple[str, int]]
    sentinel_service: str
    connect_timeout: float
    socket_timeout: float
    retries: int
    ssl_ca_file: str | None
    ssl_cert_file: str | None
    ssl_key_file: str | None
    ssl_check_hostname: bool
    max_connections: int
    extra: dict[str, Any]


def _split_options(url: str, options: StoreOptions) -> tuple[RedisOptions, float, int]:
    """``from_url``'s options as (RedisOptions, deadline, wait_replicas), timeouts fitted."""
    values: dict[str, Any] = dict(options)
    deadline = float(values.pop("deadline", DEFAULT_DEADLINE))
    wait_replicas = int(values.pop("wait_replicas", 0))
    redis_options = RedisOptions(url=url, **values)
    fitted = {
        "connect_timeout": min(redis_options.connect_timeout, deadline / 2),
        "socket_timeout": min(redis_options.socket_timeout, deadline / 2),
    }
    return RedisOptions(**{**_fields(redis_options), **fitted}), deadline, wait_replicas


def _fields(options: RedisOptions) -> dict[str, Any]:
    return {name: getattr(options, name) for name in RedisOptions.__dataclass_fields__}


def _check_client(client: object, name: str) -> None:
    """Refuse what is plainly not a Redis client (a URL string, most often)."""
    if isinstance(client, str | bytes) or not callable(getattr(client, "getdel", None)):
        raise TypeError(
            f"{name} takes a Redis client; to connect to a URL use {name}.from_url(url, ...)"
        )


class AsyncRedisLike(Protocol):
    """The slice of ``redis.asyncio.Redis`` / ``RedisCluster`` / fakeredis the store uses."""

    def set(self, name: str, value: bytes, *, px: int, nx: bool) -> Awaitable[Any]: ...
    def getdel(self, name: str) -> Awaitable[Any]: ...
    def execute_command(self, *args: Any, **options: Any) -> Awaitable[Any]: ...
    def delete(self, *names: str) -> Awaitable[Any]: ...
    def ping(self) -> Awaitable[Any]: ...


class SyncRedisLike(Protocol):
    """The blocking counterpart of :class:`AsyncRedisLike`."""

    def set(self, name: str, value: bytes, *, px: int, nx: bool) -> Any: ...
    def getdel(self, name: str) -> Any: ...
    def execute_command(self, *args: Any, **options: Any) -> Any: ...
    def ping(self) -> Any: ...


class TicketStore:
    """Async store over a redis-py asyncio client (or anything shaped like one).

    With ``batch=True`` (the default), commands issued concurrently are coalesced
    into one pipeline round trip (:mod:`ticketd.batching`); pass ``batch=False`` to
    send each command on its own.
    """

    def __init__(
        self,
        client: AsyncRedisLike,
        *,
        deadline: float = DEFAULT_DEADLINE,
        wait_replicas: int = 0,
        batch: bool = True,
    ) -> None:
        _check_client(client, "TicketStore")
        self.client = client
        self.deadline = deadline
        self.wait_replicas = wait_replicas
        self.batcher = CommandBatcher(client, deadline=deadline) if batch else None
        self._orphans: dict[str, float] = {}
        """Keys of failed mints to delete once Redis answers, with when to give up."""
        self._janitor: asyncio.Task[None] | None = None
        self._settles: set[asyncio.Task[bool]] = set()

    @classmethod
    def from_url(cls, url: str, **options: Unpack[StoreOptions]) -> Self:
        """Connect to Redis at ``url`` (:class:`StoreOptions` are the keyword options)."""
        redis_options, deadline, wait_replicas = _split_options(url, options)
        return cls(async_client(redis_options), deadline=deadline, wait_replicas=wait_replicas)

    async def put(
        self, key: str, record: bytes, ttl_ms: int, *, along: Sequence[Command] = ()
    ) -> list[Any]:
        """Store a record for ``ttl_ms`` milliseconds.

        ``along`` are other commands (the mint's rate-limit counters) sent with the
        ``SET`` and queued before it (the same round trip unless the batch overflows
        into the next pipeline); their replies are returned.

        If the store fails or the deadline passes, the ``SET`` may still run later
        (a slow Redis executes what is queued when it wakes up). The caller answers
        503 and never sees the ticket, so such a record is useless, but it must not
        linger: a background task deletes the key once Redis answers again.
        """
        set_command = ("SET", key, record, "PX", ttl_ms, "NX")
        try:
            if self.batcher is not None:  # the batcher enforces the deadline per batch
                *replies, stored = await self.batcher.execute([*along, set_command])
            else:
                async with asyncio.timeout(self.deadline):
                    replies = [await self.client.execute_command(*c) for c in along]
                    stored = await self.client.set(key, record, px=ttl_ms, nx=True)
        except _STORE_ERRORS as exc:
            self._forget_later(key, ttl_ms)
            raise StoreUnavailable.from_error(
                StoreOperation.MINT, exc, where=client_address(self.client)
            ) from exc
        _check_stored(stored)
        return replies

    async def discard(self, key: str, *, along: Sequence[Command] = ()) -> None:
        """Delete a record that was stored but will not be handed out (best effort: if
        Redis fails now, the record, which nobody holds the ticket of, expires with its TTL)."""
        try:
            if self.batcher is not None:
                await self.batcher.execute([*along, ("DEL", key)])
            else:
                async with asyncio.timeout(self.deadline):
                    for command in along:
                        await self.client.execute_command(*command)
                    await self.client.delete(key)
        except _STORE_ERRORS:
            pass

    def _forget_later(self, key: str, ttl_ms: int) -> None:
        """Queue ``key`` for the janitor (one task per store, however many mints failed)."""
        if len(self._orphans) >= MAX_ORPHANS:
            return  # a long outage: the records, which nobody can use, expire by TTL
        loop = asyncio.get_running_loop()
        # PX counts from when the SET runs, which may be later than now: keep trying
        # for one TTL past the last failure, then the record is gone by itself.
        self._orphans[key] = loop.time() + ttl_ms / 1000
        if self._janitor is None or self._janitor.done():
            self._janitor = loop.create_task(self._sweep())

    async def _sweep(self) -> None:
        """Delete queued keys twice, each time after Redis has answered a ``PING``.

        The first delete can overtake a ``SET`` still queued on another connection when
        Redis wakes; by the second round trip that ``SET`` has run. Backs off while
        Redis stays unreachable.
        """
        loop = asyncio.get_running_loop()
        pause = 0.1
        passes: dict[str, int] = {}
        while self._orphans:
            now = loop.time()
            for key in [k for k, give_up in self._orphans.items() if give_up < now]:
                del self._orphans[key]
            keys = list(self._orphans)[:500]
            if not keys:
                break
            try:
                async with asyncio.timeout(self.deadline):
                    await self.client.ping()
                    await self.client.delete(*keys)
            except _STORE_ERRORS:
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)
                continue
            pause = 0.1
            for key in keys:
                passes[key] = passes.get(key, 0) + 1
                if passes[key] >= 2:
                    self._orphans.pop(key, None)
                    del passes[key]

    async def take(self, key: str, tombstone: bytes | None = None) -> bytes | None:
        """Atomically fetch a record and leave ``tombstone`` in its place (``GETDEL``
        when ``tombstone`` is ``None``); ``None`` if there was no value.

        The value returned may be an earlier redeem's tombstone. With
        ``wait_replicas``, see :func:`~ticketd.takes.replicated_take`.
        """
        command = take_command(key, tombstone)
        try:
            if self.wait_replicas:
                async with asyncio.timeout(self.deadline):
                    pipe = replicated_take(self.client, command, self.wait_replicas, self.deadline)
                    return acknowledged(await pipe.execute(), self.wait_replicas)
            if self.batcher is not None:  # the batcher enforces the deadline per batch
                (value,) = await self.batcher.execute([command])
            else:
                async with asyncio.timeout(self.deadline):
                    value = await self.client.execute_command(*command, **take_options(command))
        except _STORE_ERRORS as exc:
            raise StoreUnavailable.from_error(
                StoreOperation.REDEEM, exc, where=client_address(self.client)
            ) from exc
        return as_bytes(value)

    async def settle(self, key: str, tombstone: bytes) -> bool:
        """Replace a tombstone by a fuller one (``SET key tombstone XX KEEPTTL``).

        Best effort: the ticket is burned already, so a failure (``False``) costs only
        what a replay of it could have told."""
        command = ("SET", key, tombstone, "XX", "KEEPTTL")
        try:
            if self.batcher is not None:
                await self.batcher.execute([command])
            else:
                async with asyncio.timeout(self.deadline):
                    await self.client.execute_command(*command)
        except _STORE_ERRORS:
            return False
        return True

    async def settle_in_order(self, key: str, tombstone: bytes) -> None:
        """:meth:`settle`, not waited for where the order is kept anyway.

        With the batcher and no ``WAIT``, every command of this store travels through
        one queue, so a settle queued now reaches Redis before any later take of the
        same key: :meth:`settle_soon`. Otherwise (no batcher, or ``wait_replicas``,
        whose takes travel in pipelines of their own) it is awaited."""
        if self.batcher is not None and self.wait_replicas == 0:
            self.settle_soon(key, tombstone)
        else:
            await self.settle(key, tombstone)

    def settle_soon(self, key: str, tombstone: bytes) -> None:
        """:meth:`settle` without waiting for it: queued now, sent with the next batch.

        The redeem's caller (a handshake) does not wait for a write whose failure
        changes nothing for it. Queued in call order, so a later redeem of the same
        ticket by this process (a replay) reaches Redis after it. Without a batcher
        the settle runs as a task of its own (in no order with later commands), which
        :meth:`aclose` waits for; :meth:`settle_in_order` picks the right one."""
        command = ("SET", key, tombstone, "XX", "KEEPTTL")
        if self.batcher is not None:
            for future in self.batcher.submit([command]):
                future.add_done_callback(_ignore_failure)
            return
        task = asyncio.get_running_loop().create_task(self.settle(key, tombstone))
        self._settles.add(task)
        task.add_done_callback(self._settles.discard)

    async def ping(self) -> None:
        """Raise :class:`StoreUnavailable` unless Redis answers within the deadline."""
        try:
            async with asyncio.timeout(self.deadline):
                await self.client.ping()
        except _STORE_ERRORS as exc:
            raise StoreUnavailable.from_error(
                StoreOperation.PING, exc, where=client_address(self.client)
            ) from exc

    async def drain(self) -> None:
        """Wait until the writes queued so far (:meth:`settle_soon`) have reached Redis."""
        if self._settles:
            await asyncio.gather(*self._settles, return_exceptions=True)
        if self.batcher is not None:
            await self.batcher.drain()

    async def aclose(self) -> None:
        await self.drain()
        if self._janitor is not None:
            self._janitor.cancel()
            await asyncio.gather(self._janitor, return_exceptions=True)
        if self.batcher is not None:
            await self.batcher.aclose()
        close = getattr(self.client, "aclose", None)
        if close is not None:
            await close()


class BlockingTicketStore:
    """Blocking store over a redis-py client, for threaded servers.

    Python cannot interrupt a blocking socket call, so the deadline is kept by the
    client's timeouts: a redis-py client whose connect or socket timeout is unset or
    longer than the deadline is refused (``ValueError``). :meth:`from_url` builds a
    client that fits.
    """

    def __init__(
        self, client: SyncRedisLike, *, deadline: float = DEFAULT_DEADLINE, wait_replicas: int = 0
    ) -> None:
        _check_client(client, "BlockingTicketStore")
        _check_timeouts(client, deadline)
        self.client = client
        self.deadline = deadline
        self.wait_replicas = wait_replicas

    @classmethod
    def from_url(cls, url: str, **options: Unpack[StoreOptions]) -> Self:
        """Connect to Redis at ``url`` (:class:`StoreOptions` are the keyword options)."""
        redis_options, deadline, wait_replicas = _split_options(url, options)
        return cls(sync_client(redis_options), deadline=deadline, wait_replicas=wait_replicas)

    def put(self, key: str, record: bytes, ttl_ms: int) -> None:
        """Store a record for ``ttl_ms`` milliseconds."""
        try:
            stored = self.client.set(key, record, px=ttl_ms, nx=True)
        except _BLOCKING_STORE_ERRORS as exc:
            raise StoreUnavailable.from_error(
                StoreOperation.MINT, exc, where=client_address(self.client)
            ) from exc
        _check_stored(stored)

    def take(self, key: str, tombstone: bytes | None = None) -> bytes | None:
        """Blocking :meth:`TicketStore.take`."""
        command = take_command(key, tombstone)
        try:
            if self.wait_replicas:
                pipe = replicated_take(self.client, command, self.wait_replicas, self.deadline)
                return acknowledged(pipe.execute(), self.wait_replicas)
            value = self.client.execute_command(*command, **take_options(command))
        except _BLOCKING_STORE_ERRORS as exc:
            raise StoreUnavailable.from_error(
                StoreOperation.REDEEM, exc, where=client_address(self.client)
            ) from exc
        return as_bytes(value)

    def settle(self, key: str, tombstone: bytes) -> bool:
        """Blocking :meth:`TicketStore.settle`."""
        try:
            self.client.execute_command("SET", key, tombstone, "XX", "KEEPTTL")
        except _BLOCKING_STORE_ERRORS:
            return False
        return True

    def ping(self) -> None:
        """Raise :class:`StoreUnavailable` unless Redis answers within the deadline."""
        try:
            self.client.ping()
        except _BLOCKING_STORE_ERRORS as exc:
            raise StoreUnavailable.from_error(
                StoreOperation.PING, exc, where=client_address(self.client)
            ) from exc

    def close(self) -> None:
        close = getattr(self.client, "close", None)
        if close is not None:
            close()


def _ignore_failure(future: asyncio.Future[Any]) -> None:
    """A best-effort write's outcome: retrieved (so asyncio does not report it), ignored."""
    if not future.cancelled():
        future.exception()


def _check_stored(stored: object) -> None:
    if not stored:  # SET NX found the key: a 256-bit collision would be a bug, not data
        raise StoreUnavailable("mint failed: key already exists", operation=StoreOperation.MINT)


def _check_timeouts(client: object, deadline: float) -> None:
    """Refuse a redis-py client that could block a thread longer than ``deadline``."""
    kwargs = client_kwargs(client)
    if kwargs is None:
        return  # not a redis-py client (fakeredis has no sockets, a test double none either)
    for name in ("socket_connect_timeout", "socket_timeout"):
        value = kwargs.get(name)
        if not isinstance(value, int | float) or not 0 < value <= deadline:
            raise ValueError(
                f"the client's {name} ({value}) must be set and at most the deadline "
                f"({deadline:g} s): a blocking call cannot be cut short; "
                "use BlockingTicketStore.from_url or ticketd.connection.sync_client"
            )
