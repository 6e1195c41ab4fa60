"""Coalescing concurrent Redis commands into one pipeline round trip.

Under load, many handshakes redeem tickets at the same moment. Sent one by one,
each ``GETDEL`` pays redis-py's per-command cost (pool checkout, encoding,
parsing, retry wrapper) and a network round trip. :class:`CommandBatcher` queues
the commands issued during one event-loop iteration and sends them together as
a non-transactional pipeline; each caller gets its own reply (or its own error).

Nothing about atomicity changes: each command is still a single-key Redis command
executed on its own, and a pipeline is only a way to put several on the wire at
once. With no concurrency a batch holds one command and costs about the same as
sending it directly.

**The wire.** For redis-py's asyncio client with hiredis (standalone and Sentinel: what
:func:`ticketd.connection.async_client` builds; RESP3, redis-py's default, or RESP2), a
batch does not go through redis-py's ``Pipeline``: :func:`exchange` checks a connection
out of the pool, writes the packed batch, reads the replies off the connection's own
hiredis reader in one loop under one timeout, and applies the client's response
callbacks, as ``Pipeline.execute`` does. Per reply, redis-py's path costs ~20 Python
calls (an ``asyncio.timeout`` per reply, ``parse_response`` twice, the parser's
wrapper); that was most of what a pipelined command cost (``bench/NOTES.md``). What the
pipeline guarantees is kept: a connection is never returned to the pool with unread
replies (any failure or cancellation mid-batch disconnects it), a ``READONLY`` reply (a
demoted master after a failover) disconnects it so the next checkout finds the new
master, a RESP3 push between replies (a maintenance notice) goes to redis-py's push
handlers and is not taken for a reply, and nothing is retried (ticketd's clients retry
nothing either: :mod:`ticketd.connection`). Any other client (Cluster, fakeredis, the
pure Python parser) takes redis-py's pipeline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio
from redis._parsers.hiredis import NOT_ENOUGH_DATA, _AsyncHiredisParser
from redis.asyncio.connection import DefaultParser
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.utils import DEFAULT_RESP_VERSION

__all__ = ["Command", "CommandBatcher", "direct_pool", "exchange", "send_batch", "strand_none"]

_PUSH: type | None
try:
    from hiredis import PushNotification as _PUSH
except ImportError:  # pragma: no cover - hiredis < 3.2, or none (no hiredis parser then)
    _PUSH = None
"""hiredis' type for RESP3 push frames (hiredis >= 3.2), or ``None``."""

Command = tuple[Any, ...]


def _fail(
    batch: list[tuple[Command, asyncio.Future[Any]]], error: Callable[[], BaseException]
) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(error())


def strand_none(
    batch: Sequence[tuple[Any, asyncio.Future[Any]]], what: str
) -> Callable[[asyncio.Task[None]], None]:
    """A done callback for the task that sends ``batch``: every caller still waiting
    when the task ends gets a store failure, ``"<what> cancelled"`` if the task was
    cancelled (shutdown: its callers were not, and must not see a cancellation they did
    not ask for), else ``"<what> abandoned"``. One place for every way a task can end,
    including cancelled before its first step, where no ``finally`` in it ever runs;
    after a normal end every future is done and this does nothing."""

    def done(task: asyncio.Task[None]) -> None:
        message = f"{what} {'cancelled' if task.cancelled() else 'abandoned'}"
        for _, future in batch:
            if not future.done():
                future.set_exception(RedisConnectionError(message))

    return done


def _options(command: Command) -> dict[str, Any]:
    """redis-py parses a ``SET`` reply into a bool unless told the command has ``GET``:
    the redeem's ``SET key tombstone XX GET KEEPTTL`` must return the old value."""
    if command and command[0] == "SET" and "GET" in command[3:]:
        return {"get": True}
    return {}


def direct_pool(client: Any) -> Any:
    """The connection pool :func:`exchange` may use for ``client``, or ``None``.

    Only a redis-py asyncio ``Redis`` (not a single-connection client) whose
    connections read through the hiredis parser, over RESP2 or over RESP3 (redis-py's
    default) with a hiredis that tells push frames apart; anything else (Cluster,
    fakeredis, the Python parser) goes through redis-py's pipeline.
    """
    if not isinstance(client, redis.asyncio.Redis):
        return None
    if getattr(client, "single_connection_client", False) or type(client).__module__.startswith(
        "fakeredis"
    ):
        return None
    pool = client.connection_pool
    kwargs = pool.connection_kwargs
    parser = kwargs.get("parser_class", DefaultParser)  # hiredis when it is installed
    if not (isinstance(parser, type) and issubclass(parser, _AsyncHiredisParser)):
        return None
    # redis-py's default protocol is RESP3, where the server may push (maintenance
    # notifications) between replies: those must be told apart, which hiredis < 3.2 cannot.
    protocol = str(kwargs.get("protocol") or DEFAULT_RESP_VERSION)
    if protocol not in ("2", "3") or (protocol == "3" and _PUSH is None):
        return None
    return pool


async def exchange(client: Any, pool: Any, commands: Sequence[Command]) -> list[Any]:
    """Send ``commands`` on one pooled connection and read their replies (see the
    module docstring). Error replies come back as exception instances, in place."""
    connection = await pool.get_connection()
    try:
        parser = connection._parser
        await connection.send_packed_command(connection.pack_commands(commands))
        reader = parser._reader
        replies: list[Any] = []
        wanted = len(commands)
        try:
            async with asyncio.timeout(connection.socket_timeout):
                while len(replies) < wanted:
                    reply = reader.gets()
                    while reply is NOT_ENOUGH_DATA:
                        await parser.read_from_socket()
                        reply = reader.gets()
                    if _PUSH is not None and isinstance(reply, _PUSH):
                        # A RESP3 push is no reply: redis-py's handlers take it (a
                        # maintenance notice, an invalidation), as its read_response does.
                        await parser.handle_push_response(reply)
                        continue
                    replies.append(reply)
        except TimeoutError:
            raise RedisTimeoutError("Timeout reading from Redis") from None
        except OSError as exc:
            raise RedisConnectionError(f"Error while reading from Redis: {exc}") from exc
        for reply in replies:  # what redis-py's reader raises rather than returns
            if isinstance(reply, RedisConnectionError):
                raise reply
    except BaseException:
        await connection.disconnect(nowait=True)
        raise
    else:
        if any(isinstance(reply, ReadOnlyError) for reply in replies):
            await connection.disconnect(nowait=True)
    finally:
        await pool.release(connection)
    callbacks = client.response_callbacks
    out: list[Any] = []
    for command, reply in zip(commands, replies, strict=True):
        if not isinstance(reply, Exception):
            callback = callbacks.get(command[0])
            if callback is not None:
                reply = callback(reply, **_options(command))
        out.append(reply)
    return out


async def send_batch(client: Any, pool: Any, commands: Sequence[Command]) -> list[Any]:
    """``commands``' replies (error replies in place): on :func:`exchange` when ``pool``
    (from :func:`direct_pool`) is set, else as one redis-py pipeline."""
    if pool is not None:
        return await exchange(client, pool, commands)
    pipe = client.pipeline(transaction=False)
    for command in commands:
        pipe.execute_command(*command, **_options(command))
    return list(await pipe.execute(raise_on_error=False))


class CommandBatcher:
    """Send the commands of concurrent callers as one pipeline per loop iteration.

    ``client`` is a redis-py asyncio client (standalone, Sentinel master or Cluster)
    or fakeredis; anything with ``pipeline(transaction=False)``.
    """

    def __init__(self, client: Any, *, max_batch: int = 512, deadline: float | None = None) -> None:
        self.client = client
        self.max_batch = max_batch
        self.deadline = deadline
        """Seconds a batch may take on the wire; past it, every caller gets ``TimeoutError``.

        One timer per batch instead of one per caller: under load that is most of
        what an ``asyncio.timeout`` per command would cost."""
        self._queue: list[tuple[Command, asyncio.Future[Any]]] = []
        self._scheduled = False
        self._in_flight: set[asyncio.Task[None]] = set()
        self._pool = direct_pool(client)

    async def execute(self, commands: Sequence[Command]) -> list[Any]:
        """Run ``commands`` (e.g. ``("GETDEL", key)``) and return their replies in order.

        A command that fails raises its own exception; the others are unaffected.
        """
        futures = self.submit(commands)
        if len(futures) == 1:  # a redeem's GETDEL: no gather (a task-like future) needed
            return [await futures[0]]
        return list(await asyncio.gather(*futures))

    def submit(self, commands: Sequence[Command]) -> list[asyncio.Future[Any]]:
        """Queue ``commands`` now, in call order, and return their replies' futures.

        What :meth:`execute` awaits; a caller that does not need the replies (a
        best-effort write) must still retrieve each future's exception."""
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Any]] = [loop.create_future() for _ in commands]
        self._queue.extend(zip(commands, futures, strict=True))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return futures

    def _flush(self) -> None:
        self._scheduled = False
        while self._queue:
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
            task.add_done_callback(strand_none(batch, "batch"))

    async def _send(self, batch: list[tuple[Command, asyncio.Future[Any]]]) -> None:
        try:
            commands = [command for command, _ in batch]
            async with asyncio.timeout(self.deadline):
                replies = await send_batch(self.client, self._pool, commands)
            if len(replies) != len(batch):
                raise RedisConnectionError("pipeline reply count does not match")
            for (_, future), reply in zip(batch, replies, strict=True):
                if future.done():  # the caller gave up (deadline); the command still ran
                    continue
                if isinstance(reply, Exception):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)
        except Exception as exc:  # connection lost, timeout: every caller fails
            failure = exc
            _fail(batch, lambda: failure)
        # A cancellation, or anything else that ends the task: strand_none().

    async def aclose(self) -> None:
        """Send what is queued, then wait for batches on the wire."""
        await self.drain()

    async def drain(self) -> None:
        """Send what is queued now, then wait for every batch on the wire."""
        if self._queue:
            self._flush()
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)
