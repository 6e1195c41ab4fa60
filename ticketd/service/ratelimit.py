"""Mint rate limits and the outstanding-ticket cap, on the ``limits`` library.

Three independent limits, each off when configured as ``0``:

- per client IP (``TICKETD_RATE_LIMIT_PER_IP``), checked before the cookie is
  verified, so cookie guessing is throttled too;
- per verified subject (``TICKETD_RATE_LIMIT_PER_SUBJECT``);
- outstanding tickets per subject (``TICKETD_MAX_OUTSTANDING_PER_SUBJECT``):
  tickets issued to the subject within the last TTL. Redeemed tickets keep counting
  until their TTL would have passed, so this is an upper bound on what is really
  outstanding, which is the safe direction for a cap.

Counters live in the same Redis as the tickets (in-process memory on the embedded
store). Keys are hashes of the verified subject, never the cookie string.
A limiter that cannot reach its storage fails closed (:class:`StoreUnavailable`).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItem, RateLimitItemPerSecond, parse
from limits.aio.storage import (
    MemoryStorage,
    RedisClusterStorage,
    RedisSentinelStorage,
    RedisStorage,
    Storage,
)
from limits.aio.strategies import MovingWindowRateLimiter, SlidingWindowCounterRateLimiter
from limits.errors import StorageError

from ..exceptions import StoreUnavailable
from ..tickets import Subject
from .settings import Settings

__all__ = ["Limited", "MintLimits", "limits_storage"]


@dataclass(frozen=True, slots=True)
class Limited:
    """A refusal: which limit (``ip``, ``subject``, ``outstanding``) and when to retry."""

    limit: str
    retry_after: int


def limits_storage(settings: Settings) -> Storage:
    """The ``limits`` storage matching the ticket store's Redis deployment."""
    prefix = f"{settings.key_prefix}rl"
    if settings.redis_url is None:
        return MemoryStorage(wrap_exceptions=True)
    options: dict[str, Any] = {
        "socket_timeout": settings.redis_timeout,
        "socket_connect_timeout": settings.redis_timeout,
    }
    if settings.redis_url.startswith("rediss://"):
        if settings.redis_ca_file:
            options["ssl_ca_certs"] = settings.redis_ca_file
        if settings.redis_cert_file:
            options["ssl_certfile"] = settings.redis_cert_file
        if settings.redis_key_file:
            options["ssl_keyfile"] = settings.redis_key_file
    if settings.redis_sentinels:
        from urllib.parse import urlsplit

        auth = urlsplit(settings.redis_url).netloc.rpartition("@")
        credentials = f"{auth[0]}@" if auth[1] else ""
        hosts = ",".join(settings.redis_sentinels)
        uri = f"async+redis+sentinel://{credentials}{hosts}/{settings.redis_sentinel_service}"
        return RedisSentinelStorage(
            uri, wrap_exceptions=True, key_prefix=prefix, implementation="redispy", **options
        )
    if settings.redis_cluster:
        uri = "async+" + settings.redis_url.replace("redis://", "redis+cluster://", 1)
        return RedisClusterStorage(
            uri, wrap_exceptions=True, key_prefix=prefix, implementation="redispy", **options
        )
    return RedisStorage(
        "async+" + settings.redis_url,
        wrap_exceptions=True,
        key_prefix=prefix,
        implementation="redispy",
        **options,
    )


def _rate(text: str) -> RateLimitItem | None:
    return None if text.strip() == "0" else parse(text)


def _subject_id(subject: Subject) -> str:
    # Type-tagged so the int 7 and the string "7" are different subjects.
    raw = f"{type(subject).__name__}:{subject}".encode()
    return hashlib.sha256(raw).hexdigest()[:24]


class MintLimits:
    """All mint-side limits of one service instance."""

    def __init__(self, settings: Settings, storage: Storage) -> None:
        self.storage = storage
        self.deadline = settings.store_deadline
        self.per_ip = _rate(settings.rate_limit_per_ip)
        self.per_subject = _rate(settings.rate_limit_per_subject)
        cap = settings.max_outstanding_per_subject
        self.outstanding = (
            RateLimitItemPerSecond(cap, math.ceil(settings.ticket_ttl)) if cap else None
        )
        self._counter = SlidingWindowCounterRateLimiter(storage)
        self._window = MovingWindowRateLimiter(storage)

    async def check_ip(self, ip: str | None) -> Limited | None:
        if self.per_ip is None or ip is None:
            return None
        return await self._hit(self._counter, self.per_ip, "ip", ip)

    async def check_subject(self, subject: Subject) -> Limited | None:
        sid = _subject_id(subject)
        if self.per_subject is not None:
            limited = await self._hit(self._counter, self.per_subject, "subject", sid)
            if limited:
                return limited
        if self.outstanding is not None:
            return await self._hit(self._window, self.outstanding, "outstanding", sid)
        return None

    async def _hit(
        self,
        strategy: SlidingWindowCounterRateLimiter | MovingWindowRateLimiter,
        item: RateLimitItem,
        name: str,
        identifier: str,
    ) -> Limited | None:
        try:
            async with asyncio.timeout(self.deadline):
                if await strategy.hit(item, name, identifier):
                    return None
                stats = await strategy.get_window_stats(item, name, identifier)
        except (StorageError, TimeoutError, OSError) as exc:
            raise StoreUnavailable(f"rate limiter failed: {type(exc).__name__}") from exc
        return Limited(name, max(1, math.ceil(stats.reset_time - time.time())))

    async def aclose(self) -> None:
        reset = getattr(self.storage, "bridge", None)
        client = getattr(reset, "storage", None)
        close = getattr(client, "aclose", None)
        if close is not None:
            await close()
