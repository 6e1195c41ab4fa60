"""POST /v1/tickets/redeem, probes, metrics and the committed OpenAPI spec."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.support.redisproc import RedisServer
from tests.support.service_support import (
    APP_ORIGIN,
    SERVICE_KEY,
    SERVICE_KEY_2,
    cookie_for,
    make_settings,
    running_service,
    ticket_keys,
    tombstone_keys,
)
from tests.support.webhooks import TIMEOUT, receiver
from ticketd.service.openapi import render
from ticketd.tombstones import connection_id
from ticketd.webhook import verify

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def service(redis_server: RedisServer) -> Iterator[str]:
    settings = make_settings(redis_server.url, service_keys=f"{SERVICE_KEY},{SERVICE_KEY_2}")
    with running_service(settings) as base:
        yield base


@pytest.fixture
def http(service: str, redis_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service, timeout=10) as client:
        yield client


def mint(http: httpx.Client, audience: str = "chat") -> str:
    response = http.post(
        "/v1/tickets",
        json={"audience": audience},
        headers={"Origin": APP_ORIGIN, "Cookie": f"session={cookie_for(5)}"},
    )
    assert response.status_code == 201
    ticket: str = response.json()["ticket"]
    return ticket


def redeem(http: httpx.Client, body: object, key: str | None = SERVICE_KEY) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return http.post("/v1/tickets/redeem", json=body, headers=headers)


def test_redeem_returns_claims_once(http: httpx.Client, redis_sync: redis.Redis) -> None:
    ticket = mint(http)
    first = redeem(http, {"ticket": ticket, "origin": APP_ORIGIN, "audience": "chat"})
    assert first.status_code == 200
    claims = first.json()
    assert (claims["subject"], claims["origin"], claims["audience"]) == (5, APP_ORIGIN, "chat")
    assert first.headers["cache-control"] == "no-store"
    assert ticket_keys(redis_sync) == []
    assert len(tombstone_keys(redis_sync)) == 1  # lives until the TTL: a replay is known
    again = redeem(http, {"ticket": ticket, "origin": APP_ORIGIN, "audience": "chat"})
    assert again.status_code == 401
    assert again.json()["code"] == "invalid"


def _answer(response: httpx.Response) -> tuple[int, list[tuple[str, str]], bytes]:
    """What the caller sees (headers that differ per response by nature left out)."""
    varying = {"date", "content-length", "server"}
    headers = sorted((k, v) for k, v in response.headers.items() if k.lower() not in varying)
    return response.status_code, headers, response.content


def _metric(text: str, line_start: str) -> float:
    values = [float(x.rsplit(" ", 1)[1]) for x in text.splitlines() if x.startswith(line_start)]
    return sum(values)


def test_a_replay_reads_like_an_unknown_ticket_but_is_counted_and_logged(
    http: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", "ticketd.service")
    ticket = mint(http)
    body = {"ticket": ticket, "origin": APP_ORIGIN, "audience": "chat", "client_ip": "192.0.2.7"}
    assert redeem(http, body).status_code == 200
    before = http.get("/metrics").text
    same_id = {"Authorization": f"Bearer {SERVICE_KEY}", "X-Request-ID": "replay-check-0001"}
    replayed = http.post("/v1/tickets/redeem", json=body, headers=same_id)
    unknown = http.post(
        "/v1/tickets/redeem", json={**body, "ticket": "A" * 42 + "A"}, headers=same_id
    )
    assert replayed.status_code == 401
    assert _answer(replayed) == _answer(unknown)  # byte for byte, headers included
    after = http.get("/metrics").text
    replayed_line = 'ticketd_redemptions_total{outcome="replayed",via="http"}'
    invalid_line = 'ticketd_redemptions_total{outcome="invalid",via="http"}'
    assert _metric(after, replayed_line) == _metric(before, replayed_line) + 1
    assert _metric(after, invalid_line) == _metric(before, invalid_line) + 1  # the unknown one
    retry_line = 'ticketd_replays_total{kind="retry"}'
    assert _metric(after, retry_line) == _metric(before, retry_line) + 1  # same client, at once
    lines = [r.getMessage() for r in caplog.records if "why=replayed" in r.getMessage()]
    assert len(lines) == 1
    for fact in ("code=invalid", "same_client=yes", "since_first_use_ms=", "action=none"):
        assert fact in lines[0]
    for secret in (ticket, "192.0.2.7"):
        assert secret not in caplog.text


def test_both_rotated_service_keys_work(http: httpx.Client) -> None:
    for key in (SERVICE_KEY, SERVICE_KEY_2):
        response = redeem(
            http, {"ticket": mint(http), "origin": APP_ORIGIN, "audience": "chat"}, key=key
        )
        assert response.status_code == 200


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer",
        "Bearer wrong-key",
        f"Basic {SERVICE_KEY}",
        f"Bearer {SERVICE_KEY}x",
        f"Bearer {SERVICE_KEY[:-1]}",
    ],
)
def test_bad_service_key_is_401_and_burns_nothing(
    http: httpx.Client, redis_sync: redis.Redis, authorization: str | None
) -> None:
    ticket = mint(http)
    headers = {"Authorization": authorization} if authorization else {}
    response = http.post(
        "/v1/tickets/redeem", headers=headers, json={"ticket": ticket, "origin": APP_ORIGIN}
    )
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_service_key"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert len(ticket_keys(redis_sync)) == 1


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"origin": "https://evil.example"}, 403, "origin_mismatch"),
        ({"origin": None}, 403, "origin_mismatch"),
        ({"audience": "billing"}, 403, "audience_mismatch"),
    ],
)
def test_binding_mismatch_reports_reason_and_burns(
    http: httpx.Client, redis_sync: redis.Redis, change: dict[str, object], status: int, code: str
) -> None:
    ticket = mint(http)
    body = {"ticket": ticket, "origin": APP_ORIGIN, "audience": "chat", **change}
    response = redeem(http, body)
    assert (response.status_code, response.json()["code"]) == (status, code)
    assert ticket not in response.text
    assert ticket_keys(redis_sync) == []


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"ticket": "short", "origin": APP_ORIGIN, "audience": "chat"}, 401, "malformed"),
        ({"ticket": "A" * 43, "origin": APP_ORIGIN, "audience": "chat"}, 401, "invalid"),
        ({"origin": APP_ORIGIN}, 400, "invalid_body"),
        ({"ticket": 5, "origin": APP_ORIGIN}, 400, "invalid_body"),
        ({"ticket": "x", "origin": APP_ORIGIN, "extra": 1}, 400, "invalid_body"),
    ],
)
def test_bad_redeem_bodies(http: httpx.Client, body: object, status: int, code: str) -> None:
    response = redeem(http, body)
    assert (response.status_code, response.json()["code"]) == (status, code)


def test_redeem_needs_json(http: httpx.Client) -> None:
    response = http.post(
        "/v1/tickets/redeem",
        content=b"ticket=x",
        headers={
            "Authorization": f"Bearer {SERVICE_KEY}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert (response.status_code, response.json()["code"]) == (415, "unsupported_media_type")


def test_redeem_disabled_without_service_keys(redis_url: str) -> None:
    with running_service(make_settings(redis_url, service_keys="")) as base:
        response = httpx.post(
            f"{base}/v1/tickets/redeem",
            json={"ticket": "x"},
            headers={"Authorization": "Bearer anything"},
        )
    assert (response.status_code, response.json()["code"]) == (404, "redeem_disabled")


def test_probes_and_metrics(http: httpx.Client) -> None:
    assert http.get("/livez").json() == {"status": "ok"}
    assert http.get("/readyz").json() == {"status": "ready", "store": "redis"}
    mint(http)
    http.post("/v1/tickets", headers={"Origin": "https://evil.example"})
    text = http.get("/metrics").text
    assert 'ticketd_mints_total{outcome="ok"}' in text
    assert 'ticketd_mints_total{outcome="origin_not_allowed"}' in text
    assert "ticketd_mint_duration_seconds_bucket" in text
    assert 'ticketd_build_info{version="' in text
    assert "evil" not in text


def test_unknown_path_is_problem(http: httpx.Client) -> None:
    response = http.get("/nope")
    assert (response.status_code, response.json()["code"]) == (404, "not_found")
    assert response.headers["content-type"] == "application/problem+json"


def test_committed_openapi_matches_the_code() -> None:
    committed = (ROOT / "openapi" / "openapi.json").read_text(encoding="utf-8")
    assert committed == render(), "openapi/openapi.json is stale: run `make openapi`"
    spec = json.loads(committed)
    assert {"/v1/tickets", "/v1/tickets/redeem", "/livez", "/readyz", "/metrics"} <= set(
        spec["paths"]
    )


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [(APP_ORIGIN, APP_ORIGIN), ("https://evil.example", None), (None, None)],
)
def test_client_module_importable_from_allowed_origins_only(
    http: httpx.Client, origin: str | None, allowed: str | None
) -> None:
    response = http.get("/v1/client.js", headers={"Origin": origin} if origin else {})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert "export function connect" in response.text
    assert response.headers.get("access-control-allow-origin") == allowed
    assert response.headers["vary"] == "Origin"


def test_redeem_without_audience_refused_when_several_are_served(
    http: httpx.Client, redis_sync: redis.Redis
) -> None:
    ticket = mint(http, audience="billing")
    response = redeem(http, {"ticket": ticket, "origin": APP_ORIGIN})
    assert (response.status_code, response.json()["code"]) == (400, "invalid_body")
    assert len(ticket_keys(redis_sync)) == 1  # nothing consumed


def test_redeem_without_audience_uses_the_only_one(redis_url: str) -> None:
    settings = make_settings(redis_url, audiences="chat")
    with running_service(settings) as base, httpx.Client(base_url=base, timeout=10) as client:
        ticket = mint(client)
        response = redeem(client, {"ticket": ticket, "origin": APP_ORIGIN})
    assert response.status_code == 200
    assert response.json()["audience"] == "chat"


@pytest.mark.parametrize(
    "authorizations",
    [
        [f"Bearer {SERVICE_KEY}", "Bearer wrong-key"],  # first-wins would accept
        ["Bearer wrong-key", f"Bearer {SERVICE_KEY}"],  # last-wins would accept
        [f"Bearer {SERVICE_KEY}", f"Bearer {SERVICE_KEY}"],
        [f"Bearer {SERVICE_KEY}", "Basic dXNlcjpwYXNz"],
        [f"Bearer {SERVICE_KEY}, Bearer wrong-key"],  # a proxy's comma-joined pair
        [f"Bearer wrong-key, Bearer {SERVICE_KEY}"],
        [f"Bearer {SERVICE_KEY} {SERVICE_KEY_2}"],
        [f"Basic dXNlcjpwYXNz, Bearer {SERVICE_KEY}"],
    ],
)
def test_two_authorizations_are_400_and_burn_nothing(
    http: httpx.Client,
    redis_sync: redis.Redis,
    authorizations: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", "ticketd.service")
    ticket = mint(http)
    response = http.post(
        "/v1/tickets/redeem",
        headers=[("Authorization", value) for value in authorizations],
        json={"ticket": ticket, "origin": APP_ORIGIN, "audience": "chat"},
    )
    assert (response.status_code, response.json()["code"]) == (400, "invalid_authorization")
    assert len(ticket_keys(redis_sync)) == 1
    assert "redeem refused code=invalid_authorization status=400" in caplog.text
    assert SERVICE_KEY not in caplog.text
    assert ticket not in caplog.text


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "Bearer  "])
def test_the_bearer_scheme_is_case_insensitive(http: httpx.Client, scheme: str) -> None:
    response = http.post(
        "/v1/tickets/redeem",
        headers={"Authorization": f"{scheme} {SERVICE_KEY}"},
        json={"ticket": mint(http), "origin": APP_ORIGIN, "audience": "chat"},
    )
    assert response.status_code == 200, response.text


def test_the_service_applies_its_replay_policy_and_signs_the_webhook(
    redis_url: str, redis_sync: redis.Redis
) -> None:
    hook_secret = "whsec_" + base64.b64encode(b"s" * 32).decode()
    with receiver() as hook:
        settings = make_settings(
            redis_url,
            service_keys=SERVICE_KEY,
            on_replay="close_first",
            replay_grace="2",
            replay_webhook_url=hook.url,
            replay_webhook_secret=hook_secret,
        )
        with running_service(settings) as base, httpx.Client(base_url=base, timeout=10) as http:
            ticket = mint(http)
            first = {"ticket": ticket, "origin": APP_ORIGIN, "audience": "chat"}
            assert redeem(http, {**first, "client_ip": "192.0.2.7"}).status_code == 200
            # The same client at once: a retry, ignored by the policy.
            assert redeem(http, {**first, "client_ip": "192.0.2.7"}).status_code == 401
            assert redis_sync.keys("ticketd:rv:*") == []
            # Another client: the first connection is revoked.
            assert redeem(http, {**first, "client_ip": "198.51.100.1"}).status_code == 401
            (key,) = redis_sync.keys("ticketd:rv:*")
            assert isinstance(key, bytes)
            assert key.decode().endswith(f":c:{connection_id(ticket)}")
            assert hook.arrived.wait(TIMEOUT)
        # Leaving running_service closed the webhook after what was queued.
    assert len(hook.received) == 2
    actions = []
    for headers, body in hook.received:
        assert verify(hook_secret, headers, body, now=int(headers["webhook-timestamp"]))
        actions.append(json.loads(body)["data"]["action"])
        assert ticket.encode() not in body
    assert actions == ["ignored_retry", "close_first"]
