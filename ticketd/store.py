"""The ticket store: the only code that talks to Redis.

Two single-key commands, so the store works unchanged on standalone Redis,
Sentinel, Cluster, managed services and fakeredis:

- mint:   ``SET key record PX ttl NX`` (NX: a 256-bit collision would be a bug, not data);
- redeem: ``GETDEL key`` — atomic read-and-delete in one round trip. Two concurrent
  redeems of one ticket cannot both see the record.

Every failure (connection, timeout, an error reply such as OOM under
``maxmemory``, or the overall deadline) becomes :class:`StoreUnavailable`.
A redeem that fails after the command was sent fails closed: the caller gets
``StoreUnavailable`` and the ticket is probably gone, which is the safe side.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Any, Protocol

from redis.exceptions import RedisClusterException, RedisError

from .batching import Command, CommandBatcher
from .exceptions import StoreUnavailable

__all__ = ["AsyncRedisLike", "BlockingTicketStore", "SyncRedisLike", "TicketStore"]

MAX_ORPHANS = 10_000
"""Keys of failed mints the store remembers to clean up (beyond: left to their TTL)."""

DEFAULT_DEADLINE = 1.0
"""Seconds a store operation may take in all, retries included."""

# RedisClusterException (cluster down, slots not covered) does not derive from RedisError.
_STORE_ERRORS = (RedisError, RedisClusterException, OSError, asyncio.TimeoutError)
_BLOCKING_STORE_ERRORS = (RedisError, RedisClusterException, OSError)


class AsyncRedisLike(Protocol):
    """The slice of ``redis.asyncio.Redis`` / ``RedisCluster`` / fakeredis the store uses."""

    def set(self, name: str, value: bytes, *, px: int, nx: bool) -> Awaitable[Any]: ...
    def getdel(self, name: str) -> Awaitable[Any]: ...
    def delete(self, *names: str) -> Awaitable[Any]: ...
    def execute_command(self, *args: Any) -> Awaitable[Any]: ...
    def ping(self) -> Awaitable[Any]: ...


class SyncRedisLike(Protocol):
    """The blocking counterpart of :class:`AsyncRedisLike`."""

    def set(self, name: str, value: bytes, *, px: int, nx: bool) -> Any: ...
    def getdel(self, name: str) -> Any: ...
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
        self.client = client
        self.deadline = deadline
        self.wait_replicas = wait_replicas
        self.batcher = CommandBatcher(client, deadline=deadline) if batch else None
        self._orphans: dict[str, float] = {}
        """Keys of failed mints to delete once Redis answers, with when to give up."""
        self._janitor: asyncio.Task[None] | None = None

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
            raise StoreUnavailable(f"mint failed: {type(exc).__name__}") from exc
        if not stored:
            raise StoreUnavailable("mint failed: key already exists")
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

    async def take(self, key: str) -> bytes | None:
        """Atomically fetch and delete a record; ``None`` if there is none."""
        try:
            if self.wait_replicas:
                async with asyncio.timeout(self.deadline):
                    return await self._take_replicated(key)
            if self.batcher is not None:  # the batcher enforces the deadline per batch
                (value,) = await self.batcher.execute([("GETDEL", key)])
            else:
                async with asyncio.timeout(self.deadline):
                    value = await self.client.getdel(key)
        except _STORE_ERRORS as exc:
            raise StoreUnavailable(f"redeem failed: {type(exc).__name__}") from exc
        return _as_bytes(value)

    async def _take_replicated(self, key: str) -> bytes | None:
        """GETDEL, then WAIT on the same connection (one round trip, a pipeline).

        If fewer replicas than asked acknowledge the delete before the deadline, the
        redeem fails closed: a failover could otherwise resurrect the ticket.

        ``WAIT`` counts acknowledgements of the last write *of its own connection*, so
        it must travel with the GETDEL:

        - on Cluster, a keyless ``WAIT`` would be routed to other nodes (and other
          connections), where it waits for nothing; it is pinned to the key's node,
          which puts it in that node's pipeline, on the GETDEL's connection;
        - its server-side timeout stays well under the client's socket timeout: a
          ``WAIT`` that blocks as long as the socket timeout races it, and the
          client's retry would then re-send the whole pipeline (a second GETDEL
          finds nothing), turning "not acknowledged" into "invalid ticket".
        """
        timeout_ms = max(1, int(min(self.deadline, _socket_timeout(self.client)) * 1000) // 2)
        pipe = self.client.pipeline(transaction=False)  # type: ignore[attr-defined]
        pipe.getdel(key)
        node_from_key = getattr(self.client, "get_node_from_key", None)
        if node_from_key is not None:  # redis.asyncio.cluster.RedisCluster
            pipe.execute_command(
                "WAIT", self.wait_replicas, timeout_ms, target_nodes=node_from_key(key)
            )
        else:
            pipe.execute_command("WAIT", self.wait_replicas, timeout_ms)
        value, acknowledged = await pipe.execute()
        if int(acknowledged) < self.wait_replicas:
            raise StoreUnavailable(
                f"redeem not acknowledged by {self.wait_replicas} replica(s) "
                f"(got {int(acknowledged)})"
            )
        return _as_bytes(value)

    async def ping(self) -> None:
        """Raise :class:`StoreUnavailable` unless Redis answers within the deadline."""
        try:
            async with asyncio.timeout(self.deadline):
                await self.client.ping()
        except _STORE_ERRORS as exc:
            raise StoreUnavailable(f"ping failed: {type(exc).__name__}") from exc

    async def aclose(self) -> None:
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

    The deadline is enforced by the client's socket timeouts (see
    :class:`~ticketd.connection.RedisOptions`).
    """

    def __init__(self, client: SyncRedisLike) -> None:
        self.client = client

    def put(self, key: str, record: bytes, ttl_ms: int) -> None:
        try:
            stored = self.client.set(key, record, px=ttl_ms, nx=True)
        except _BLOCKING_STORE_ERRORS as exc:
            raise StoreUnavailable(f"mint failed: {type(exc).__name__}") from exc
        if not stored:
            raise StoreUnavailable("mint failed: key already exists")

    def take(self, key: str) -> bytes | None:
        try:
            value = self.client.getdel(key)
        except _BLOCKING_STORE_ERRORS as exc:
            raise StoreUnavailable(f"redeem failed: {type(exc).__name__}") from exc
        return _as_bytes(value)

    def ping(self) -> None:
        try:
            self.client.ping()
        except _BLOCKING_STORE_ERRORS as exc:
            raise StoreUnavailable(f"ping failed: {type(exc).__name__}") from exc

    def close(self) -> None:
        close = getattr(self.client, "close", None)
        if close is not None:
            close()


def _socket_timeout(client: object) -> float:
    """The client's socket (read) timeout in seconds, or infinity if it has none we can see.

    ``redis.asyncio.Redis`` (standalone and Sentinel) keeps it in its connection
    pool's ``connection_kwargs``; ``RedisCluster`` in its own ``connection_kwargs``.
    """
    pool = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", None) or getattr(client, "connection_kwargs", None)
    timeout = kwargs.get("socket_timeout") if isinstance(kwargs, dict) else None
    return float(timeout) if isinstance(timeout, int | float) and timeout > 0 else float("inf")


def _as_bytes(value: object) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):  # a client created with decode_responses=True
        return value.encode("utf-8")
    raise StoreUnavailable("redeem failed: unexpected reply type")
