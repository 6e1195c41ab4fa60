"""The mint and the session's lifetime: a ticket's TTL never outlives the session, and a
session about to expire cannot mint (401 ``session_expiring``)."""

from __future__ import annotations

import json
import logging
import time

import httpx
import pytest
import redis

from tests.support.service_support import (
    APP_ORIGIN,
    aged_cookie,
    make_settings,
    running_service,
    ticket_keys,
)
from ticketd.issuer import MIN_SESSION_REMAINING

pytestmark = pytest.mark.redis

MAX_AGE = 60


def mint(http: httpx.Client, cookie: str) -> httpx.Response:
    return http.post(
        "/v1/tickets",
        headers={"Origin": APP_ORIGIN, "Cookie": f"session={cookie}"},
        json={"audience": "chat"},
    )


def test_the_ticket_ttl_is_capped_at_the_session_and_expiring_sessions_cannot_mint(
    redis_url: str, redis_sync: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(redis_url, session_max_age=MAX_AGE)
    now = int(time.time())
    with running_service(settings) as base, httpx.Client(base_url=base, timeout=10) as http:
        fresh = mint(http, aged_cookie("user-1", signed_at=now))
        assert fresh.status_code == 201, fresh.text
        assert fresh.json()["expires_in"] == 30  # control: 60 s left, the default 30 s TTL

        ending = aged_cookie("user-2", signed_at=now - MAX_AGE + 12)
        capped = mint(http, ending)
        assert capped.status_code == 201, capped.text
        body = capped.json()
        session_expires_at = now + 12
        assert body["expires_at"] <= session_expires_at
        assert 10 <= body["expires_in"] <= 12
        keys = ticket_keys(redis_sync)
        assert len(keys) == 2
        ttls = sorted(redis_sync.pttl(k) for k in keys)
        assert 0 < ttls[0] <= 12_000  # Redis forgets the ticket with its session
        records = [json.loads(redis_sync.get(k) or b"null") for k in keys]
        assert sorted(r[9] for r in records) == [session_expires_at * 1000, (now + 60) * 1000]

        expiring = aged_cookie("user-3", signed_at=now - MAX_AGE + int(MIN_SESSION_REMAINING) - 1)
        with caplog.at_level(logging.INFO, logger="ticketd.service"):
            refused = mint(http, expiring)
        assert refused.status_code == 401
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["code"] == "session_expiring"
        assert refused.headers["access-control-allow-origin"] == APP_ORIGIN
        assert len(ticket_keys(redis_sync)) == 2  # nothing stored
        lines = [r.getMessage() for r in caplog.records if "session_expiring" in r.getMessage()]
        assert len(lines) == 1
        assert expiring not in lines[0]

        expired = mint(http, aged_cookie("user-4", signed_at=now - MAX_AGE - 5))
        assert expired.status_code == 401
        assert expired.json()["code"] == "unauthenticated"  # past max age: not a session at all

        metrics = http.get("/metrics").text
        assert 'ticketd_mints_total{outcome="session_expiring"} 1.0' in metrics
