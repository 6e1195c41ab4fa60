"""Shared pieces for tests of the HTTP service: settings, cookies, key counting."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import redis
from itsdangerous.timed import TimestampSigner

from tests.support.servers import serve_app
from ticketd.service import Settings, create_app
from ticketd.service.settings import build_settings
from ticketd.sessions import issue_session_cookie
from ticketd.tombstones import is_tombstone

SECRET = "test-only-session-key-0123456789abcdefghij"
OLD_SECRET = "test-only-retired-key-9876543210zyxwvutsrq"
SERVICE_KEY = "test-only-service-key-0123456789abcdefghij"
SERVICE_KEY_2 = "test-only-service-key-2-abcdefghij0123456789"
APP_ORIGIN = "https://app.example.com"
PREFIX = "ticketd:"


def make_settings(redis_url: str | None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "allowed_origins": f"{APP_ORIGIN},https://*.tenants.example.com",
        "session_secret": SECRET,
        "audiences": "chat,billing",
        "service_keys": SERVICE_KEY,
        "rate_limit_per_subject": "1000/minute",
        "rate_limit_per_ip": "1000/minute",
        "max_outstanding_per_subject": 0,
    }
    values.update(overrides)
    return build_settings(values)


def cookie_for(subject: object, *, secret: str = SECRET, key: str = "user_id") -> str:
    return issue_session_cookie({key: subject}, secret=secret)


def aged_cookie(
    subject: object, *, signed_at: int, secret: str = SECRET, key: str = "user_id"
) -> str:
    """A session cookie whose signature says it was signed at ``signed_at`` (epoch seconds):
    a session that expires soon, without waiting for the minimum max age (60 s)."""
    with mock.patch.object(TimestampSigner, "get_timestamp", return_value=signed_at):
        return cookie_for(subject, secret=secret, key=key)


def _ticket_keys(client: redis.Redis) -> list[bytes]:
    keys = client.keys(f"{PREFIX}*")
    return [k for k in keys if isinstance(k, bytes) and b":" not in k[len(PREFIX) :]]


def ticket_keys(client: redis.Redis) -> list[bytes]:
    """Keys holding a ticket record (rate-limit counters live under ``ticketd:rl:``;
    the tombstones redeemed tickets leave are not records: :func:`tombstone_keys`)."""
    return [k for k in _ticket_keys(client) if not is_tombstone(client.get(k) or b"")]


def tombstone_keys(client: redis.Redis) -> list[bytes]:
    """Keys holding the tombstone of a redeemed ticket."""
    return [k for k in _ticket_keys(client) if is_tombstone(client.get(k) or b"")]


@contextmanager
def running_service(settings: Settings) -> Iterator[str]:
    with serve_app(create_app(settings)) as base:
        yield base
