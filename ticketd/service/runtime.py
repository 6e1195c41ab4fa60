"""The composition root: :class:`Service` holds the parts of one running instance.

:class:`Service` is built once by :func:`~ticketd.service.app.create_app` from a
:class:`~ticketd.service.settings.Settings`: the Redis client (or the embedded
in-process store), issuer, verifier, session verifier, limits and metrics. It
holds no behaviour of its own: request helpers are in :mod:`.requests`, probes in
:mod:`.probes`, the mint in :mod:`.mint` (with :mod:`.mintplan`), redeem in
:mod:`.redeem`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import fakeredis
from pydantic import SecretStr

from ..connection import RedisOptions, async_client
from ..issuer import TicketIssuer
from ..revoker import Revoker
from ..sessions import SessionVerifier
from ..store import TicketStore
from ..verifier import TicketVerifier
from ..webhook import ReplayWebhook
from .clientip import TrustedProxies
from .metrics import Metrics
from .ratelimit import MintLimits
from .requests import MAX_BODY_BYTES, ClientAddresses, OriginCheck, is_json
from .sessioncache import VerifiedCookies
from .settings import Settings

__all__ = ["MAX_BODY_BYTES", "Service", "is_json", "redis_options"]


def _required(secret: SecretStr | None) -> SecretStr:
    # Settings validation guarantees it; never verify cookies with an empty key.
    if secret is None:
        raise ValueError("TICKETD_SESSION_SECRET is required")
    return secret


class Service:
    """Everything a running instance holds: store, issuer, verifier, limits, metrics.

    Built from settings; the handlers (:mod:`.mint`, :mod:`.redeem`, :mod:`.probes`)
    take it as their first argument.
    """

    def __init__(self, settings: Settings, redis_client: Any = None) -> None:
        self.settings = settings
        if redis_client is None:
            redis_client = (
                fakeredis.FakeAsyncRedis()
                if settings.embedded
                else async_client(redis_options(settings))
            )
        self.store = TicketStore(
            redis_client,
            deadline=settings.store_deadline,
            wait_replicas=settings.redeem_wait_replicas,
        )
        self.issuer = TicketIssuer(
            self.store, key_prefix=settings.key_prefix, ttl=settings.ticket_ttl
        )
        self.metrics = Metrics()
        self.webhook = _webhook(settings, self.metrics)
        self.verifier = TicketVerifier(
            self.store,
            key_prefix=settings.key_prefix,
            on_replay=settings.on_replay,
            replay_grace=settings.replay_grace,
            observers=[self.webhook] if self.webhook is not None else [],
            revocation_ttl=settings.session_max_age,
        )
        self.revoker = Revoker(
            redis_client,
            key_prefix=settings.key_prefix,
            ttl=settings.session_max_age,
            deadline=settings.store_deadline,
        )
        self.allowlist = settings.allowlist()
        self.origins = OriginCheck(self.allowlist)
        self.allowed_hosts = settings.host_allowlist()
        self.sessions = SessionVerifier(
            settings.session_format,
            secret=_required(settings.session_secret).get_secret_value(),
            fallbacks=[s.get_secret_value() for s in settings.session_secret_fallbacks],
            max_age=settings.session_max_age,
            subject_key=settings.session_subject_key,
        )
        self.cookies = VerifiedCookies(
            self.sessions,
            cookie_name=settings.session_cookie,
            max_age=self.sessions.max_age,
            session_id_key=settings.session_id_key,
        )
        self.service_keys = [k.get_secret_value().encode() for k in settings.service_keys]
        self.proxies = TrustedProxies(settings.trusted_proxies)
        self.addresses = ClientAddresses(self.proxies)
        self.limits = MintLimits(settings, redis_client)
        self.draining = False

    async def aclose(self) -> None:
        await self.limits.aclose()
        await self.store.aclose()
        if self.webhook is not None:
            await asyncio.to_thread(self.webhook.close, 2.0)


def _webhook(settings: Settings, metrics: Metrics) -> ReplayWebhook | None:
    """The replay webhook, if configured; its drops are counted in the service's metrics."""
    if settings.replay_webhook_url is None or settings.replay_webhook_secret is None:
        return None
    return ReplayWebhook(
        settings.replay_webhook_url,
        settings.replay_webhook_secret.get_secret_value(),
        on_drop=lambda cause: metrics.replay_webhook_dropped.labels(cause).inc(),
    )


def redis_options(settings: Settings) -> RedisOptions:
    """The store's Redis options from the service settings."""
    sentinels = tuple(
        (host, int(port)) for host, _, port in (s.rpartition(":") for s in settings.redis_sentinels)
    )
    return RedisOptions(
        url=settings.redis_url or "redis://127.0.0.1:6379/0",
        cluster=settings.redis_cluster,
        sentinels=sentinels,
        sentinel_service=settings.redis_sentinel_service,
        connect_timeout=settings.redis_timeout,
        socket_timeout=settings.redis_timeout,
        ssl_ca_file=settings.redis_ca_file,
        ssl_cert_file=settings.redis_cert_file,
        ssl_key_file=settings.redis_key_file,
    )
