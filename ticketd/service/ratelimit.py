"""Mint rate limits and the outstanding-ticket cap: one atomic script call per counter key.

Three independent limits, each off when configured as ``0``:

- per client IP (``TICKETD_RATE_LIMIT_PER_IP``): every mint attempt counts, also
  those with a bad cookie and those refused, so cookie guessing is throttled;
- per verified subject (``TICKETD_RATE_LIMIT_PER_SUBJECT``);
- outstanding tickets per subject (``TICKETD_MAX_OUTSTANDING_PER_SUBJECT``):
  tickets issued to the subject whose TTL has not run out. Redeemed tickets keep
  counting until their TTL would have passed, and each ticket counts until the end
  of the second in which its TTL plus :data:`CLOCK_SKEW_MS` (1 s) ends, so the count
  is an upper bound on what is really outstanding — at every instant, window edges
  included, and while the instances' clocks agree within a second — which is the
  safe direction for a cap.

The two rates are sliding-window counters (the ones ``limits`` calls
``SlidingWindowCounter``): a count per fixed window, and the previous window's
count weighted by how much of it still overlaps the sliding window. The cap counts
tickets per second of expiry, so nothing falls out of it before its TTL has passed.

Each counter key is read, checked and written by a Lua script (:data:`LIMIT_SCRIPT`,
sent as ``EVALSHA``; atomic, so two concurrent mints can no longer both squeeze under
a limit). The per-subject rate and the cap share one key: an attempt is counted
against both or neither. On one node (standalone, Sentinel) the IP key and the
subject key go as **one** two-key call (:class:`CounterPair`), which counts the
subject only if the IP passed; on Cluster, where the two keys sit in different
slots, each key is its own single-key call (:class:`Counter`). Either way the
counters travel in the mint's single round trip with the ticket's ``SET``
(:mod:`.mintplan`). Inside the script only ``GET``
and ``SET`` run, so the Redis ACL needs ``EVALSHA`` and ``SCRIPT LOAD`` beyond the
store's own commands. A ``NOSCRIPT`` reply (a failover, ``SCRIPT FLUSH``) reloads the
script and sends the call again (:func:`ticketd.roundtrip.send_with_scripts`); there
is no non-atomic fallback.

Refused attempts are not counted against the subject (on Cluster, a refused attempt
that the subject counter already counted, because the IP limit refused it in the same
round trip, is taken back), so a user who is told to wait is not kept waiting longer by
asking again. Keys hold a hash of the verified subject, never the cookie string;
they live in the ticket Redis under ``<prefix>rl:`` (in-process memory on the
embedded store). A limiter that cannot reach Redis fails closed
(:class:`StoreUnavailable`).
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio
from redis.exceptions import ClusterCrossSlotError

from ..batching import Command, CommandBatcher
from ..roundtrip import RoundTrip, Script, send_with_scripts
from ..tickets import Subject
from .settings import Settings

__all__ = [
    "BUCKET_MS",
    "CLOCK_SKEW_MS",
    "LIMIT_SCRIPT",
    "Counter",
    "CounterPair",
    "Limited",
    "MintLimits",
    "Rate",
]

_RATE = re.compile(r"\s*(\d+)\s*/\s*(second|minute|hour|day)s?\s*")
_UNIT_MS = {"second": 1000, "minute": 60_000, "hour": 3_600_000, "day": 86_400_000}

BUCKET_MS = 1000
"""The cap counts tickets per second of expiry."""

CLOCK_SKEW_MS = 1000
"""How far the clocks of ticketd instances (and Redis') may disagree while the cap stays
an upper bound: a ticket counts this much past its TTL. Buckets are placed and dropped
by the clock of the instance that calls, and one whose clock runs ahead would otherwise
drop another's bucket while its ticket still lives on Redis' clock."""

LIMIT_SCRIPT = Script(
    """
-- One counter key: a sliding-window rate and/or an outstanding-ticket cap.
-- State (a string): "<window index>:<count>:<previous count>:<live tickets>" then
-- ";<expiry s>:<count>" per second in which live tickets expire, oldest first.
-- (A state without the live total, written by an older ticketd with its buckets in any
-- order, is read too, and written back in this form.)
-- KEYS: one counter key (ARGV as below), or the IP's and the subject's (ARGV: now, the
-- IP's configuration, the subject's), sent as one call where both are on one node.
-- ARGV: now (ms); "<rate limit>:<rate window ms>:<cap>:<ticket TTL ms>:<count refused
-- attempts 1/0>:<key TTL ms>" (0 = no rate / no cap; one argument, encoded once by the
-- caller: packing six numbers per call cost more than matching them here); "-1" to take
-- an attempt back.
-- Reply: {0, 0} counted; {1, ms} rate refused; {2, ms} cap refused (ms: retry after).
-- Each call costs O(1) Lua operations (string scans aside): the expired buckets leave
-- from the front, the attempt's bucket is almost always the last one.
local function count(key, now, config, delta)
local limit, window, cap, ttl, refused, px =
  string.match(config, '^(%d+):(%d+):(%d+):(%d+):(%d):(%d+)$')
limit, window, cap, ttl = tonumber(limit), tonumber(window), tonumber(cap), tonumber(ttl)
local index = 0
if limit > 0 then index = math.floor(now / window) end
local current, previous, total, rest = 0, 0, 0, ''
local state = redis.call('GET', key)
if state then
  local i, c, p, t, r = string.match(state, '^(%d+):(%d+):(%d+):?(%d*)(.*)$')
  if i then
    i = tonumber(i)
    if i >= index then  -- later than our clock (another instance's): the same window
      index, current, previous = i, tonumber(c), tonumber(p)
    elseif i == index - 1 then
      previous = tonumber(c)
    end
    if t ~= '' then
      total, rest = tonumber(t), r
    elseif r ~= '' then  -- the older form: buckets in any order, no total
      local buckets, order = {}, {}
      for e, n in string.gmatch(r, ';(%d+):(%d+)') do
        e = tonumber(e)
        if buckets[e] == nil then order[#order + 1] = e; buckets[e] = 0 end
        buckets[e] = buckets[e] + tonumber(n)
      end
      table.sort(order)
      local parts = {}
      for _, e in ipairs(order) do
        parts[#parts + 1] = ';' .. e .. ':' .. buckets[e]
        total = total + buckets[e]
      end
      rest = table.concat(parts)
    end
  end
end
-- Tickets whose second of expiry has passed no longer count.
while rest ~= '' do
  local e, n, after = string.match(rest, '^;(%d+):(%d+)()')
  if e == nil or tonumber(e) * 1000 > now then break end
  total = total - tonumber(n)
  rest = string.sub(rest, after)
end
local expiry = math.ceil((now + ttl) / 1000)
local verdict = {0, 0}
if delta > 0 then
  if limit > 0 then
    local elapsed = now - index * window
    if elapsed < 0 then elapsed = 0 end
    if current + 1 + previous * (window - elapsed) / window > limit then
      verdict = {1, window - elapsed}
    end
  end
  if verdict[1] == 0 and cap > 0 and total >= cap then
    verdict = {2, tonumber(string.match(rest, '^;(%d+)')) * 1000 - now}
  end
  if verdict[1] ~= 0 and refused ~= '1' then return verdict end
  if limit > 0 then current = current + 1 end
end
-- Add (or take back) one ticket in the bucket of ``expiry``.
if cap > 0 and (delta > 0 and verdict[1] == 0 or delta < 0) then
  local head, last, n = string.match(rest, '^(.*);(%d+):(%d+)$')
  if last ~= nil and tonumber(last) == expiry then  -- the usual case: the newest bucket
    n = tonumber(n) + delta
    rest = head
    if n > 0 then rest = head .. ';' .. last .. ':' .. n end
    total = total + delta
  elseif delta > 0 and (last == nil or tonumber(last) < expiry) then
    rest = rest .. ';' .. expiry .. ':1'
    total = total + 1
  else  -- an older bucket (clocks of instances disagree): find it, or insert in order
    local parts, found = {}, false
    for e, c in string.gmatch(rest, ';(%d+):(%d+)') do
      e, c = tonumber(e), tonumber(c)
      if not found and e > expiry and delta > 0 then
        parts[#parts + 1] = ';' .. expiry .. ':1'
        found = true
      end
      if e == expiry and not found then
        c = c + delta
        found = true
      end
      if c > 0 then parts[#parts + 1] = ';' .. e .. ':' .. c end
    end
    if not found and delta > 0 then parts[#parts + 1] = ';' .. expiry .. ':1' end
    if found or delta > 0 then total = total + delta end
    rest = table.concat(parts)
  end
end
if delta < 0 and limit > 0 and index == math.floor(now / window) and current > 0 then
  current = current - 1  -- take back an attempt counted at the same ``now``
end
-- One format call with %d: cheaper than Lua's own number-to-text (%.14g) per number.
redis.call('SET', key, string.format('%d:%d:%d:%d', index, current, previous, total) .. rest,
  'PX', px)
return verdict
end

local now = tonumber(ARGV[1])
if #KEYS == 1 then
  local delta = 1
  if ARGV[3] == '-1' then delta = -1 end
  return count(KEYS[1], now, ARGV[2], delta)
end
-- Two keys (the IP's, then the subject's; not on Cluster, where they sit in different
-- slots): the subject counts only if the IP did not refuse. Reply {code, ms, key index}.
local verdict = count(KEYS[1], now, ARGV[2], 1)
if verdict[1] ~= 0 then return {verdict[1], verdict[2], 0} end
verdict = count(KEYS[2], now, ARGV[3], 1)
return {verdict[1], verdict[2], 1}
"""
)


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
        if match is None or int(match[1]) == 0:  # "0/minute" is no rate: "0" turns it off
            raise ValueError(f"not a rate: {text!r}")
        return cls(int(match[1]), _UNIT_MS[match[2]])


@dataclass(frozen=True, slots=True)
class Limited:
    """A refusal: which limit (``ip``, ``subject``, ``outstanding``) and when to retry."""

    limit: str
    retry_after: int


@dataclass(slots=True)  # not frozen: built twice per mint, and frozen init costs
class Counter:
    """One counter key of one mint attempt: its script call, its verdict, its undo.

    ``rate_name`` names the key's rate (``ip`` or ``subject``), ``cap_name`` its cap
    (``outstanding``) if it has one.
    """

    key: str
    rate_name: str
    cap_name: str
    now_ms: int
    config: bytes
    """The script's fixed arguments, encoded once: rate, window, cap, TTL, flag, key TTL."""
    undoable: bool
    """Whether a refused attempt this counter counted is taken back (not for the IP)."""

    def command(self) -> Command:
        """Count this attempt (and say whether it is refused)."""
        return ("EVALSHA", LIMIT_SCRIPT.sha_bytes, 1, self.key, self.now_ms, self.config)

    def take_back(self) -> Command:
        """Take back the attempt :meth:`command` counted."""
        return ("EVALSHA", LIMIT_SCRIPT.sha_bytes, 1, self.key, self.now_ms, self.config, b"-1")

    def verdict(self, reply: Any) -> Limited | None:
        """The refusal in this counter's reply, if it refused."""
        code, retry_ms = int(reply[0]), int(reply[1])
        if code == 0:
            return None
        name = self.rate_name if code == 1 else self.cap_name
        return Limited(name, max(1, math.ceil(retry_ms / 1000)))


@dataclass(slots=True)
class CounterPair:
    """The IP counter and the subject counter of one attempt as **one** script call
    (two keys, so standalone and Sentinel only: on Cluster they sit in different
    slots; a sharded server behind one endpoint refuses it ``CROSSSLOT``, and
    :meth:`MintLimits.run` then sends the two calls instead). The same verdicts as the
    two calls in order, with one difference: a subject is never counted for an attempt
    its IP refuses, where the two calls counted it and took it back (which left it
    counted when another instance's clock was ahead in the rate window)."""

    ip: Counter
    subject: Counter
    undoable = True
    """After a later refusal (a revoked login, a failed ``SET``): the subject's attempt
    is taken back; the IP keeps every attempt."""

    def command(self) -> Command:
        ip, subject = self.ip, self.subject
        return (
            "EVALSHA", LIMIT_SCRIPT.sha_bytes, 2, ip.key, subject.key,
            ip.now_ms, ip.config, subject.config,
        )  # fmt: skip

    def take_back(self) -> Command:
        return self.subject.take_back()

    def verdict(self, reply: Any) -> Limited | None:
        counter = self.ip if int(reply[2]) == 0 else self.subject
        return counter.verdict(reply)


def _is_paired(command: Command) -> bool:
    return len(command) == 8 and command[0] == "EVALSHA" and command[2] == 2


def _encoded(*values: int) -> bytes:
    return ":".join(str(v) for v in values).encode()


def _ip_bucket(ip: str) -> str:
    """IPv4 addresses count alone; IPv6 ones by /64, the smallest block a client holds."""
    if ":" not in ip:  # fast path: IPv4, or not an address at all (counted as given)
        return ip
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
        client: Any,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # ``client``: a redis-py asyncio client, or a CommandBatcher (its client is used).
        deadline = settings.store_deadline
        if isinstance(client, CommandBatcher):
            client, deadline = client.client, client.deadline or deadline
        self.trip = RoundTrip(client, deadline=deadline)
        self.paired = not isinstance(client, redis.asyncio.RedisCluster)
        """Both counters in one call (:class:`CounterPair`); not on Cluster."""
        self.clock = clock
        self.prefix = f"{settings.key_prefix}rl:"
        self.per_ip = Rate.parse(settings.rate_limit_per_ip)
        self.per_subject = Rate.parse(settings.rate_limit_per_subject)
        self.cap = settings.max_outstanding_per_subject
        self.ttl_ms = math.ceil(settings.ticket_ttl) * 1000
        self._subject_ids: dict[Subject, str] = {}
        # The script's fixed arguments, encoded once (only ``now`` changes per call).
        ip_rate = self.per_ip or Rate(0, 0)
        self._ip_config = _encoded(ip_rate.limit, ip_rate.window_ms, 0, 0, 1, 2 * ip_rate.window_ms)
        limit, window = (
            (self.per_subject.limit, self.per_subject.window_ms) if self.per_subject else (0, 0)
        )
        counted_ms = self.ttl_ms + CLOCK_SKEW_MS  # how long the cap counts a ticket
        key_ttl = max(2 * window, counted_ms + 2 * BUCKET_MS if self.cap else 0)
        self._subject_config = _encoded(limit, window, self.cap, counted_ms, 0, key_ttl)

    def counters(
        self, ip: str | None, subject: Subject | None
    ) -> tuple[Counter | CounterPair, ...]:
        """The counter keys this mint attempt touches, IP first (no I/O).

        ``subject`` is ``None`` when the cookie did not verify: only the IP counts.
        """
        now_ms = int(self.clock() * 1000)
        counters: list[Counter] = []
        if self.per_ip is not None and ip is not None:
            counters.append(
                Counter(
                    key=f"{self.prefix}ip:{_ip_bucket(ip)}",
                    rate_name="ip",
                    cap_name="",
                    now_ms=now_ms,
                    config=self._ip_config,
                    undoable=False,
                )
            )
        if subject is not None and (self.per_subject is not None or self.cap):
            counters.append(
                Counter(
                    key=f"{self.prefix}subject:{self._subject_id(subject)}",
                    rate_name="subject",
                    cap_name="outstanding",
                    now_ms=now_ms,
                    config=self._subject_config,
                    undoable=True,
                )
            )
        if self.paired and len(counters) == 2:
            return (CounterPair(*counters),)
        return tuple(counters)

    def _subject_id(self, subject: Subject) -> str:
        # Subjects are str or int, never bool: 7 and "7" are different dict keys.
        sid = self._subject_ids.get(subject)
        if sid is None:
            sid = _subject_id(subject)
            if len(self._subject_ids) >= 4096:
                self._subject_ids.clear()
            self._subject_ids[subject] = sid
        return sid

    async def check(self, ip: str | None, subject: Subject | None) -> Limited | None:
        """Count this mint attempt and say whether a limit refuses it (own round trip).

        The service sends the counters together with the ticket's ``SET`` instead
        (:class:`~ticketd.service.mintplan.MintPlan`, one round trip per mint).
        """
        from .mintplan import MintPlan  # the plan reads the counters' replies
        from .mintplan import Revoked as MintPlanRevoked

        plan = MintPlan(self.counters(ip, subject), None)
        if not plan.commands:
            return None
        refusal = plan.read(await self.run(plan.commands))
        assert not isinstance(refusal, MintPlanRevoked)  # the plan has no state read
        undo = plan.undo()
        if refusal is not None and undo:
            await self.run(undo)
        return refusal

    async def run(self, commands: list[Command]) -> list[Any]:
        """Send ``commands`` in one round trip (reloading the script on ``NOSCRIPT``).

        A paired call refused ``CROSSSLOT`` (a sharded server behind one endpoint, as a
        cluster proxy: the two keys are in different slots) did not run: it is sent
        again as its two single-key calls, the subject's only if the IP passed, and
        this limiter pairs no more.
        """
        replies = await send_with_scripts(self.trip, commands, (LIMIT_SCRIPT,))
        for i, (command, reply) in enumerate(zip(commands, replies, strict=True)):
            if _is_paired(command) and isinstance(reply, ClusterCrossSlotError):
                self.paired = False
                replies[i] = await self._one_key_at_a_time(command)
        return replies

    async def _one_key_at_a_time(self, paired: Command) -> Any:
        _, sha, _, ip_key, subject_key, now, ip_config, subject_config = paired
        (ip,) = await send_with_scripts(
            self.trip, [("EVALSHA", sha, 1, ip_key, now, ip_config)], (LIMIT_SCRIPT,)
        )
        if isinstance(ip, Exception) or int(ip[0]) != 0:
            return ip if isinstance(ip, Exception) else [ip[0], ip[1], 0]
        (subject,) = await send_with_scripts(
            self.trip, [("EVALSHA", sha, 1, subject_key, now, subject_config)], (LIMIT_SCRIPT,)
        )
        return subject if isinstance(subject, Exception) else [subject[0], subject[1], 1]

    async def aclose(self) -> None:
        await self.trip.aclose()
