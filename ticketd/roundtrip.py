"""One round trip for a group of commands, coalesced with concurrent callers' groups.

:class:`RoundTrip` is the I/O half of a plan such as the mint's
(:class:`~ticketd.service.mintplan.MintPlan`): the plan lists its commands, this
sends them — together with the groups of every other caller of the same event-loop
iteration, as one non-transactional pipeline — and hands back each command's reply
*or its error reply*, in order, for the plan to read. Compared with
:class:`~ticketd.batching.CommandBatcher` it waits on one future per group, not one
per command, and never raises for a single command's error reply (a ``NOSCRIPT``
must be told apart from a refusal).

The wire is :func:`~ticketd.batching.exchange` where the client allows it (redis-py's
asyncio client with hiredis), else redis-py's pipeline.

Scripts go out as ``EVALSHA``; :func:`send_with_scripts` reloads a script that
Redis does not know (after a failover or ``SCRIPT FLUSH``) with ``SCRIPT LOAD`` and
sends the refused calls again — they did not run, so this is safe, and there is
never a fallback to non-atomic commands.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisClusterException, RedisError

from .batching import direct_pool, send_batch, strand_none
from .exceptions import StoreOperation, StoreUnavailable

__all__ = ["RoundTrip", "Script", "send_with_scripts"]

_Command = tuple[Any, ...]
_Group = tuple[Sequence[_Command], "asyncio.Future[list[Any]]"]
_TRANSPORT_ERRORS = (RedisError, RedisClusterException, OSError, TimeoutError)


@dataclass(frozen=True)
class Script:
    """A Lua script known by its SHA1 (what ``EVALSHA`` names it by)."""

    source: str
    sha: str = field(init=False)
    sha_bytes: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        sha = hashlib.sha1(self.source.encode()).hexdigest()  # noqa: S324 - Redis names scripts so
        object.__setattr__(self, "sha", sha)
        object.__setattr__(self, "sha_bytes", sha.encode())


class RoundTrip:
    """Send groups of commands; concurrent groups share one pipeline per loop iteration.

    ``client`` is a redis-py asyncio client (standalone, Sentinel master or Cluster)
    or fakeredis. ``deadline``: seconds one pipeline may take on the wire (one timer
    per pipeline); past it, every group in it fails.

    ``max_batch``: commands per pipeline (a group is never split; one larger than
    this goes alone). The groups of one loop iteration past it go as several
    pipelines on several pooled connections, sent at once — small enough that Redis
    answers the first part of a burst while it still works on the rest. With one
    pipeline per burst, every request of the burst waits for the last script call in
    it, the event loop has nothing to do meanwhile, and the requests come back (and
    the next burst forms) all together. Measured with the mint bench (64
    connections, three commands per mint): the server process was busy 85 to 90 % of the
    time with one pipeline of up to 512 commands, 96 to 99 % at 64. Splitting stops at
    ``max_pipelines`` pipelines in flight: a larger burst, or one while others are on
    the wire, goes as fewer, larger pipelines (greedy packing of whole groups may add a
    few), so a burst never takes a pooled connection per 64 commands.
    """

    def __init__(
        self,
        client: Any,
        *,
        deadline: float | None,
        operation: StoreOperation = StoreOperation.MINT,
        max_batch: int = 64,
        max_pipelines: int = 8,
    ) -> None:
        self.client = client
        self.deadline = deadline
        self.operation = operation
        """What a failure is reported as (:attr:`StoreUnavailable.operation`)."""
        self.max_batch = max_batch
        self.max_pipelines = max_pipelines
        """Pipelines in flight at most, counting those already on the wire (each holds a
        pooled connection), before a burst's pipelines grow instead of multiplying;
        one pipeline per loop iteration is always sent."""
        self._queue: list[_Group] = []
        self._scheduled = False
        self._in_flight: set[asyncio.Task[None]] = set()
        self._pool = direct_pool(client)

    async def send(self, commands: Sequence[_Command]) -> list[Any]:
        """The replies to ``commands`` in order; a command's error reply is its exception.

        Raises :class:`StoreUnavailable` if the round trip itself fails (connection,
        deadline).
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        self._queue.append((commands, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        try:
            return await future
        except _TRANSPORT_ERRORS as exc:
            raise StoreUnavailable.from_error(self.operation, exc) from exc

    def _flush(self) -> None:
        self._scheduled = False
        queue, self._queue = self._queue, []
        total = sum(len(commands) for commands, _ in queue)
        free = max(1, self.max_pipelines - len(self._in_flight))  # connections it may take
        limit = max(self.max_batch, -(-total // free))
        batch: list[_Group] = []
        size = 0
        for group in queue:
            if batch and size + len(group[0]) > limit:
                self._start(batch)
                batch, size = [], 0
            batch.append(group)
            size += len(group[0])
        if batch:
            self._start(batch)

    def _start(self, batch: list[_Group]) -> None:
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)
        task.add_done_callback(strand_none(batch, "round trip"))

    async def _send(self, batch: list[_Group]) -> None:
        try:
            flat = [command for commands, _ in batch for command in commands]
            async with asyncio.timeout(self.deadline):
                replies = await send_batch(self.client, self._pool, flat)
            if len(replies) != sum(len(commands) for commands, _ in batch):
                raise RedisConnectionError("pipeline reply count does not match")
            start = 0
            for commands, future in batch:
                end = start + len(commands)
                if not future.done():
                    future.set_result(replies[start:end])
                start = end
        except Exception as exc:  # connection lost, deadline: every group fails
            _fail(batch, exc)
        # A cancellation, or anything else that ends the task: strand_none().

    async def load(self, scripts: Sequence[Script]) -> None:
        """``SCRIPT LOAD`` each script (on Cluster: on every primary), within the deadline."""
        try:
            async with asyncio.timeout(self.deadline):
                for script in scripts:
                    await self.client.script_load(script.source)
        except _TRANSPORT_ERRORS as exc:
            raise StoreUnavailable.from_error(self.operation, exc) from exc

    async def aclose(self) -> None:
        """Wait for pipelines already on the wire."""
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)


def _fail(batch: list[_Group], error: BaseException) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(error)


async def send_with_scripts(
    trip: RoundTrip, commands: Sequence[_Command], scripts: Sequence[Script]
) -> list[Any]:
    """:meth:`RoundTrip.send`, reloading ``scripts`` and resending calls refused ``NOSCRIPT``.

    One reload and one resend at most: a call still refused stays an error reply.
    """
    replies = await trip.send(commands)
    missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if missing:
        await trip.load(scripts)
        again = await trip.send([commands[i] for i in missing])
        for i, reply in zip(missing, again, strict=True):
            replies[i] = reply
    return replies
