"""What the service says about its store before the first request: where it is, whether it answers.

The CLI uses these at start-up (one warning when Redis does not answer; the process
stays live, readiness stays false) and in ``ticketd check-config --connect``. A
description names ``host:port`` (or the Sentinels, or the socket path) and the
cause (exception type, errno, Redis error); never the URL's user or password.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from ..exceptions import StoreUnavailable
from ..store import TicketStore
from .settings import Settings

__all__ = [
    "check_redeem_command",
    "check_store",
    "describe_failure",
    "redis_target",
    "warn_if_unreachable",
]

_logger = logging.getLogger("ticketd.service")


def redis_target(settings: Settings) -> str:
    """``host:port`` of the configured Redis (no credentials), or ``embedded``."""
    if settings.redis_url is None:
        return "embedded"
    if settings.redis_sentinels:
        return (
            f"Sentinels {','.join(settings.redis_sentinels)} "
            f"(service {settings.redis_sentinel_service})"
        )
    parts = urlsplit(settings.redis_url)
    if parts.scheme == "unix":
        return parts.path or "unix socket"
    host = parts.hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port or 6379
    except ValueError:
        return f"{host} (invalid port)"
    return f"{host}:{port}"


def describe_failure(exc: BaseException, settings: Settings) -> str:
    """The cause of a store failure in one line: ``ConnectionError: Error 111 ...``."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(chain) < 8:
        chain.append(current)
        current = current.__cause__ or current.__context__
    cause = chain[1] if len(chain) > 1 else exc  # what the store error wraps
    text = str(cause).strip()
    line = f"{type(cause).__name__}: {text}" if text else type(cause).__name__
    errnos = [e.errno for e in chain if isinstance(e, OSError) and isinstance(e.errno, int)]
    errno = errnos[0] if errnos else None
    if errno is not None and str(errno) not in line:
        line += f" (errno {errno})"
    password = urlsplit(settings.redis_url or "").password
    return line.replace(password, "[redacted]") if password else line


async def check_store(store: TicketStore, settings: Settings) -> str | None:
    """``None`` when the store answers ``PING``, else why not (one line)."""
    try:
        await store.ping()
    except StoreUnavailable as exc:
        return describe_failure(exc, settings)
    return None


_PROBE_KEY = "check-config:redeem-probe"
_PROBE_TOMBSTONE = b"[0,0,null,null,null]"


async def check_redeem_command(store: TicketStore, settings: Settings) -> str | None:
    """``None`` when Redis runs the redeem command (``SET ... XX GET KEEPTTL``, Redis 6.2
    or later), else why not. The probe key does not exist, so ``XX`` writes nothing."""
    try:
        await store.take(settings.key_prefix + _PROBE_KEY, _PROBE_TOMBSTONE)
    except StoreUnavailable as exc:
        return (
            f"the redeem command SET ... XX GET KEEPTTL failed ({describe_failure(exc, settings)});"
            " ticketd needs Redis 6.2 or later"
        )
    return None


async def warn_if_unreachable(store: TicketStore, settings: Settings) -> bool:
    """Ping once at start-up; log one warning line when Redis does not answer."""
    if settings.embedded:
        return True
    problem = await check_store(store, settings)
    if problem is None:
        _logger.info("store: Redis at %s answers", redis_target(settings))
        return True
    _logger.warning(
        "store: Redis at %s is unreachable (%s); mint and redeem answer 503 and /readyz "
        "is not ready until it answers; /livez stays up",
        redis_target(settings),
        problem,
    )
    return False
