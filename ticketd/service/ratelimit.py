"""Mint rate limits and the outstanding-ticket cap: sliding-window counters in Redis.

Three independent limits, each off when configured as ``0``:

- per client IP (``TICKETD_RATE_LIMIT_PER_IP``): every mint attempt counts, also
  those with a bad cookie, so cookie guessing is throttled;
- per verified subject (``TICKETD_RATE_LIMIT_PER_SUBJECT``);
- outstanding tickets per subject (``TICKETD_MAX_OUTSTANDING_PER_SUBJECT``):
  tickets issued to the subject within the last TTL. Redeemed tickets keep counting
  until their TTL would have passed, so this is an upper bound on what is really
  outstanding, which is the safe direction for a cap.

The algorithm is the sliding-window counter (the one ``limits`` calls
``SlidingWindowCounter``): a counter per fixed window, and the previous window's
count weighted by how much of it still overlaps the sliding window. Each check is
plain ``INCR``/``PEXPIRE``/``GET`` commands, no Lua, sent for all limits of a request
in one pipeline that :class:`~ticketd.batching.CommandBatcher` also shares with
concurrent requests — one round trip per mint instead of one script call per
limit (profiling showed the per-limit scripts were a third of the mint's cost).
The counters are approximate under races in the same way ``limits`` is: two
concurrent requests can both see the count below the limit by one.

Refused attempts are taken back from the subject counters (``DECR``), so a user
who is told to wait is not kept waiting longer by asking again. Keys hold a hash
of the verified subject, never the cookie string; they live in the ticket Redis
under ``<prefix>rl:`` (in-process memory on the embedded store). A limiter that
cannot reach Redis fails closed (:class:`StoreUnavailable`).
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisClusterException, RedisError

from ..batching import Command, CommandBatcher
from ..exceptions import StoreOperation, StoreUnavailable
from ..tickets import Subject
from .settings import Settings

__all__ = ["LimitPlan", "Limited", "MintLimits", "Rate"]

_RATE = re.compile(r"\s*(\d+)\s*/\s*(second|minute|hour|day)s?\s*")
_UNIT_MS = {"second": 1000, "minute": 60_000, "hour": 3_600_000, "day": 86_400_000}


@dataclass(frozen=True, slots=True)
class Rate:
    """``limit`` events per ``window_ms``."""

    limit: int
    window_ms: int

    @classmethod
    def parse(cls, text: str) -> Rate | None:
        """``"30/minute"`` → ``Rate(30, 60000)``; ``"0"`` → ``None`` (no limit)."""
        if text.strip() == "0":
            return None
        match = _RATE.fullmatch(text)
        if match is None:
            raise ValueError(f"not a rate: {text!r}")
        return cls(int(match[1]), _UNIT_MS[match[2]])


@dataclass(frozen=True, slots=True)
class Limited:
    """A refusal: which limit (``ip``, ``subject``, ``outstanding``) and when to retry."""

    limit: str
    retry_after: int


@dataclass(frozen=True, slots=True)
class _Window:
    name: str
    rate: Rate
    key: str
    """Counter key of the current window (the previous one is ``index - 1``)."""
    previous_key: str
    weight: float
    """How much of the previous window still overlaps the sliding window, 0..1."""
    remaining_ms: int

    def commands(self) -> list[Command]:
        return [
            ("INCR", self.key),
            ("PEXPIRE", self.key, 2 * self.rate.window_ms),
            ("GET", self.previous_key),
        ]

    def verdict(self, current: Any, previous: Any) -> Limited | None:
        count = int(current) + int(previous or 0) * self.weight
        if count <= self.rate.limit:
            return None
        return Limited(self.name, max(1, math.ceil(self.remaining_ms / 1000)))


def _ip_bucket(ip: str) -> str:
    """IPv4 addresses count alone; IPv6 ones by /64, the smallest block a client holds."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def _subject_id(subject: Subject) -> str:
    # Type-tagged so the int 7 and the string "7" are different subjects.
    raw = f"{type(subject).__name__}:{subject}".encode()
    return hashlib.sha256(raw).hexdigest()[:24]


class MintLimits:
    """All mint-side limits of one service instance."""

    def __init__(
        self,
        settings: Settings,
        batcher: CommandBatcher,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.batcher = batcher
        self.clock = clock
        self.prefix = f"{settings.key_prefix}rl:"
        self.per_ip = Rate.parse(settings.rate_limit_per_ip)
        self.per_subject = Rate.parse(settings.rate_limit_per_subject)
        cap = settings.max_outstanding_per_subject
        ttl_ms = math.ceil(settings.ticket_ttl) * 1000
        self.outstanding = Rate(cap, ttl_ms) if cap else None

    def _window(self, name: str, rate: Rate, identifier: str, now_ms: int) -> _Window:
        index, elapsed = divmod(now_ms, rate.window_ms)
        base = f"{self.prefix}{name}:{identifier}:"
        return _Window(
            name=name,
            rate=rate,
            key=f"{base}{index}",
            previous_key=f"{base}{index - 1}",
            weight=(rate.window_ms - elapsed) / rate.window_ms,
            remaining_ms=rate.window_ms - elapsed,
        )

    def plan(self, ip: str | None, subject: Subject | None) -> LimitPlan:
        """The counters this mint attempt touches (no I/O).

        ``subject`` is ``None`` when the cookie did not verify: only the IP counts.
        """
        now_ms = int(self.clock() * 1000)
        windows: list[_Window] = []
        if self.per_ip is not None and ip is not None:
            windows.append(self._window("ip", self.per_ip, _ip_bucket(ip), now_ms))
        if subject is not None:
            sid = _subject_id(subject)
            if self.per_subject is not None:
                windows.append(self._window("subject", self.per_subject, sid, now_ms))
            if self.outstanding is not None:
                windows.append(self._window("outstanding", self.outstanding, sid, now_ms))
        return LimitPlan(tuple(windows))

    async def check(self, ip: str | None, subject: Subject | None) -> Limited | None:
        """Count this mint attempt and say whether a limit refuses it (own round trip).

        The service usually sends :meth:`LimitPlan.commands` together with the
        ticket's ``SET`` instead (one round trip per mint).
        """
        plan = self.plan(ip, subject)
        if not plan.commands:
            return None
        refusal = plan.verdict(await self._run(plan.commands))
        if refusal is not None and plan.take_back:
            await self._run(plan.take_back)
        return refusal

    async def _run(self, commands: list[Command]) -> list[Any]:
        try:  # the batcher enforces the deadline (one timer per batch)
            return await self.batcher.execute(commands)
        except (RedisError, RedisClusterException, OSError, TimeoutError) as exc:
            raise StoreUnavailable.from_error(StoreOperation.RATE_LIMIT, exc) from exc


@dataclass(frozen=True, slots=True)
class LimitPlan:
    """The counter commands of one mint attempt, and how to read their replies."""

    windows: tuple[_Window, ...]

    @property
    def commands(self) -> list[Command]:
        return [c for w in self.windows for c in w.commands()]

    def verdict(self, replies: Sequence[Any]) -> Limited | None:
        """The first limit that refuses, given the replies to :attr:`commands`."""
        for i, window in enumerate(self.windows):
            refusal = window.verdict(replies[3 * i], replies[3 * i + 2])
            if refusal is not None:
                return refusal
        return None

    @property
    def take_back(self) -> list[Command]:
        """Undo the subject counters of a refused attempt (the IP keeps counting)."""
        commands: list[Command] = []
        for window in self.windows:
            if window.name != "ip":
                # PEXPIRE again: had the counter expired meanwhile, DECR would recreate
                # it (at -1) without a TTL.
                commands += [
                    ("DECR", window.key),
                    ("PEXPIRE", window.key, 2 * window.rate.window_ms),
                ]
        return commands
