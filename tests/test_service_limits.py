"""Rate limits, the outstanding cap, key rotation and store failures, over real HTTP and Redis."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import redis
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from tests.support.redisproc import RedisServer
from tests.support.service_support import (
    APP_ORIGIN,
    OLD_SECRET,
    SECRET,
    cookie_for,
    make_settings,
    running_service,
    ticket_keys,
)
from ticketd.sessions import TICKETD_SALT


def post(base: str, cookie: str, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{base}/v1/tickets",
        timeout=10,
        headers={"Origin": APP_ORIGIN, "Cookie": f"session={cookie}", **headers},
    )


def test_per_subject_rate_limit(redis_url: str, redis_sync: redis.Redis) -> None:
    with running_service(make_settings(redis_url, rate_limit_per_subject="3/minute")) as base:
        statuses = [post(base, cookie_for("alice")).status_code for _ in range(3)]
        limited = post(base, cookie_for("alice"))
        other = post(base, cookie_for("bob"))
    assert statuses == [201, 201, 201]
    assert limited.status_code == 429
    assert limited.json()["code"] == "rate_limited"
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert limited.headers["access-control-expose-headers"] == "Retry-After"
    assert other.status_code == 201
    assert len(ticket_keys(redis_sync)) == 4


def test_subject_limit_is_keyed_on_subject_not_cookie_string(redis_url: str) -> None:
    """Distinct cookie strings for one subject share one budget."""
    serializer = URLSafeTimedSerializer(SECRET, salt=TICKETD_SALT)
    spellings = [
        serializer.dumps({"user_id": "alice"}),
        serializer.dumps({"user_id": "alice", "theme": "dark"}),
        serializer.dumps({"theme": "light", "user_id": "alice"}),
    ]
    assert len(set(spellings)) == 3
    with running_service(make_settings(redis_url, rate_limit_per_subject="2/minute")) as base:
        statuses = [post(base, cookie).status_code for cookie in spellings]
    assert statuses == [201, 201, 429]


def test_int_and_str_subjects_are_different(redis_url: str) -> None:
    with running_service(make_settings(redis_url, rate_limit_per_subject="1/minute")) as base:
        statuses = [post(base, cookie_for(7)).status_code, post(base, cookie_for("7")).status_code]
    assert statuses == [201, 201]


def test_per_ip_limit_counts_before_authentication(redis_url: str) -> None:
    with running_service(make_settings(redis_url, rate_limit_per_ip="2/minute")) as base:
        first = post(base, "garbage").status_code
        second = post(base, cookie_for("a")).status_code
        third = post(base, cookie_for("b"))
    assert (first, second) == (401, 201)
    assert third.status_code == 429
    assert third.json()["code"] == "rate_limited"


def test_forwarded_for_ignored_unless_peer_is_trusted(redis_url: str) -> None:
    untrusted = make_settings(redis_url, rate_limit_per_ip="1/minute")
    with running_service(untrusted) as base:
        a = post(base, cookie_for("a"), **{"X-Forwarded-For": "198.51.100.1"}).status_code
        b = post(base, cookie_for("b"), **{"X-Forwarded-For": "198.51.100.2"}).status_code
    assert (a, b) == (201, 429)  # spoofed header did not buy a fresh budget


def test_forwarded_for_used_from_trusted_proxy(redis_url: str, redis_sync: redis.Redis) -> None:
    redis_sync.flushall()
    trusted = make_settings(redis_url, rate_limit_per_ip="1/minute", trusted_proxies="127.0.0.1/32")
    with running_service(trusted) as base:
        a = post(base, cookie_for("a"), **{"X-Forwarded-For": "198.51.100.1"}).status_code
        b = post(base, cookie_for("b"), **{"X-Forwarded-For": "198.51.100.2"}).status_code
        c = post(base, cookie_for("c"), **{"X-Forwarded-For": "198.51.100.2"}).status_code
    assert (a, b, c) == (201, 201, 429)


def test_outstanding_cap(redis_url: str, redis_sync: redis.Redis) -> None:
    with running_service(make_settings(redis_url, max_outstanding_per_subject=2)) as base:
        statuses = [post(base, cookie_for("carol")).status_code for _ in range(2)]
        capped = post(base, cookie_for("carol"))
    assert statuses == [201, 201]
    assert capped.status_code == 429
    assert capped.json()["code"] == "too_many_outstanding"
    assert int(capped.headers["retry-after"]) >= 1
    assert len(ticket_keys(redis_sync)) == 2


def test_zero_disables_limits(redis_url: str) -> None:
    settings = make_settings(
        redis_url, rate_limit_per_subject="0", rate_limit_per_ip="0", max_outstanding_per_subject=0
    )
    with running_service(settings) as base:
        statuses = {post(base, cookie_for("dave")).status_code for _ in range(40)}
    assert statuses == {201}


def test_secret_rotation(redis_url: str) -> None:
    rotated = make_settings(redis_url, session_secret=SECRET, session_secret_fallbacks=OLD_SECRET)
    with running_service(rotated) as base:
        old = post(base, cookie_for("erin", secret=OLD_SECRET)).status_code
        new = post(base, cookie_for("erin", secret=SECRET)).status_code
    assert (old, new) == (201, 201)
    with running_service(make_settings(redis_url)) as base:
        retired = post(base, cookie_for("erin", secret=OLD_SECRET))
    assert retired.status_code == 401


def test_max_age(redis_url: str) -> None:
    class Stale(TimestampSigner):
        def get_timestamp(self) -> int:
            return 1_000_000_000  # 2001

    serializer = URLSafeTimedSerializer(SECRET, salt=TICKETD_SALT, signer=Stale)
    stale = serializer.dumps({"user_id": "frank"})
    with running_service(make_settings(redis_url, session_max_age=3600)) as base:
        assert post(base, stale).status_code == 401
        assert post(base, cookie_for("frank")).status_code == 201


@pytest.fixture
def doomed_redis() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.close()


def test_store_down_is_503_with_retry_after(doomed_redis: RedisServer) -> None:
    with running_service(make_settings(doomed_redis.url)) as base:
        assert post(base, cookie_for("gina")).status_code == 201
        doomed_redis.stop()
        response = post(base, cookie_for("gina"))
        ready = httpx.get(f"{base}/readyz", timeout=10)
        live = httpx.get(f"{base}/livez", timeout=10)
        assert response.status_code == 503
        assert response.json()["code"] == "store_unavailable"
        assert response.headers["retry-after"] == "1"
        assert "ticket" not in response.json()
        assert (ready.status_code, live.status_code) == (503, 200)
        doomed_redis.start()  # same port: the service recovers without a restart
        assert post(base, cookie_for("gina")).status_code == 201
        assert httpx.get(f"{base}/readyz", timeout=10).status_code == 200


def test_store_full_is_503_and_nothing_half_done(doomed_redis: RedisServer) -> None:
    settings = make_settings(doomed_redis.url, rate_limit_per_ip="0", rate_limit_per_subject="0")
    with running_service(settings) as base, doomed_redis.client() as admin:
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", "1")
        response = post(base, cookie_for("hank"))
        admin.config_set("maxmemory", "0")
        keys = admin.dbsize()
    assert response.status_code == 503
    assert keys == 0
