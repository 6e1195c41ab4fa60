"""The service side of revocation: v2 records from the cookie, the mint's refusal of a
revoked login, and ``revoked`` from ``POST /v1/tickets/redeem``."""

from __future__ import annotations

import json

import httpx
import pytest
import redis

from tests.support.service_support import (
    APP_ORIGIN,
    SECRET,
    SERVICE_KEY,
    make_settings,
    running_service,
    ticket_keys,
)
from ticketd.revocation import signed_at
from ticketd.sessions import issue_session_cookie

pytestmark = pytest.mark.redis

BEARER = {"Authorization": f"Bearer {SERVICE_KEY}"}


def cookie(user: str, sid: str | None = None) -> str:
    data: dict[str, object] = {"user_id": user}
    if sid is not None:
        data["sid"] = sid
    return issue_session_cookie(data, secret=SECRET)


def mint(http: httpx.Client, value: str) -> httpx.Response:
    return http.post(
        "/v1/tickets",
        headers={"Origin": APP_ORIGIN, "Cookie": f"session={value}"},
        json={"audience": "chat"},
    )


def redeem(http: httpx.Client, ticket: str) -> httpx.Response:
    return http.post(
        "/v1/tickets/redeem",
        headers=BEARER,
        json={"ticket": ticket, "origin": APP_ORIGIN, "audience": "chat"},
    )


def test_session_revocation_with_a_session_id_key(redis_url: str, redis_sync: redis.Redis) -> None:
    settings = make_settings(redis_url, session_id_key="sid", session_max_age=3600)
    phone, laptop = cookie("user-1", "phone-session"), cookie("user-1", "laptop-session")
    with running_service(settings) as base, httpx.Client(base_url=base, timeout=10) as http:
        minted = mint(http, phone)
        assert minted.status_code == 201
        (key,) = ticket_keys(redis_sync)
        record = json.loads(redis_sync.get(key) or b"null")
        signed = signed_at(phone)
        assert record[0] == 2
        assert record[7:10] == ["phone-session", signed * 1000, (signed + 3600) * 1000]
        claims = redeem(http, minted.json()["ticket"]).json()
        assert claims["session"] == "phone-session"
        assert claims["auth_at"] == signed

        held = mint(http, phone).json()["ticket"]
        revoked = http.post(
            "/v1/revocations",
            headers=BEARER,
            json={"subject": "user-1", "session": "phone-session"},
        )
        assert revoked.status_code == 202
        refused = mint(http, phone)
        assert refused.status_code == 401
        assert refused.json()["code"] == "session_revoked"
        late = redeem(http, held)
        assert late.status_code == 403
        assert late.json()["code"] == "revoked"
        assert mint(http, laptop).status_code == 201  # control: the other session is fine


def test_logout_other_devices_keeps_the_current_session(redis_url: str) -> None:
    settings = make_settings(redis_url, session_id_key="sid")
    current, other = cookie("user-2", "current"), cookie("user-2", "other")
    stateless = cookie("user-2")  # signed before the revocation, like the others
    with running_service(settings) as base, httpx.Client(base_url=base, timeout=10) as http:
        body = {"subject": "user-2", "except_session": "current"}
        assert http.post("/v1/revocations", headers=BEARER, json=body).status_code == 202
        assert mint(http, current).status_code == 201
        assert mint(http, other).status_code == 401
        # Stateless cookies (no session id in the payload): the signing time is the id.
        assert mint(http, stateless).status_code == 401


def test_revocations_need_service_keys(redis_url: str) -> None:
    settings = make_settings(redis_url, service_keys="")
    with running_service(settings) as base, httpx.Client(base_url=base, timeout=10) as http:
        response = http.post("/v1/revocations", headers=BEARER, json={"subject": "u"})
        assert response.status_code == 404
        assert response.json()["code"] == "revocations_disabled"
