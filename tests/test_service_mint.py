"""POST /v1/tickets through a real uvicorn server and a real redis-server."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest
import redis

from tests.support.service_support import (
    APP_ORIGIN,
    OLD_SECRET,
    cookie_for,
    ticket_keys,
)
from ticketd import Reason, TicketRejected, TicketVerifier

MINT = "/v1/tickets"


def mint(
    http: httpx.Client,
    *,
    cookie: str | None = None,
    origin: str | bytes | None = APP_ORIGIN,
    **kwargs: Any,
) -> httpx.Response:
    headers: dict[bytes, bytes] = {
        k.encode(): v.encode() for k, v in (kwargs.pop("headers", None) or {}).items()
    }
    if origin is not None:
        headers[b"Origin"] = origin if isinstance(origin, bytes) else origin.encode("latin-1")
    if cookie is not None:
        headers[b"Cookie"] = f"session={cookie}".encode()
    return http.post(MINT, headers=headers, **kwargs)


def assert_problem(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == code
    assert body["status"] == status
    assert body["type"] == f"urn:ticketd:problem:{code}"
    assert "ticket" not in body


def test_mint_returns_ticket_bound_to_origin(
    http: httpx.Client, redis_sync: redis.Redis, redis_url: str
) -> None:
    response = mint(http, cookie=cookie_for(42), json={"audience": "chat", "claims": {"r": 1}})
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"ticket", "expires_in", "expires_at", "audience"}
    assert len(body["ticket"]) == 43
    assert body["expires_in"] == 30
    assert body["audience"] == "chat"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["vary"] == "Origin, Cookie"
    assert response.headers["access-control-allow-origin"] == APP_ORIGIN
    assert response.headers["access-control-allow-credentials"] == "true"
    assert len(ticket_keys(redis_sync)) == 1

    async def redeem() -> None:
        verifier = TicketVerifier.from_url(redis_url, audience="chat")
        try:
            claims = await verifier.redeem(body["ticket"], origin=APP_ORIGIN)
            assert (claims.subject, claims.origin, claims.extra) == (42, APP_ORIGIN, {"r": 1})
            with pytest.raises(TicketRejected) as info:
                await verifier.redeem(body["ticket"], origin=APP_ORIGIN)
            assert info.value.reason is Reason.INVALID
        finally:
            await verifier.aclose()

    asyncio.run(redeem())


def test_default_audience_and_wildcard_origin(http: httpx.Client) -> None:
    response = mint(http, cookie=cookie_for("u"), origin="https://acme.tenants.example.com")
    assert response.status_code == 201
    assert response.json()["audience"] == "chat"
    assert response.headers["access-control-allow-origin"] == "https://acme.tenants.example.com"


@pytest.mark.parametrize(
    "origin",
    [
        None,
        "null",
        "https://app.example.com/",
        "https://app.example.com/path",
        "https://user@app.example.com",
        "http://app.example.com",
        "https://app.example.com:8443",
        "https://app.example.com.evil.com",
        "https://evilapp.example.com",
        "https://a.b.tenants.example.com",
        "https://tenants.example.com",
        # Sent as raw bytes: httpx refuses to encode non-ASCII header text itself.
        "https://\u0430pp.example.com".encode(),  # Cyrillic a, as UTF-8
        b"https://app.example.com\xff",  # obs-text after an allowed origin
        "https://app.example.com x",
        "https://" + "a" * 8192,
    ],
)
def test_origin_refused_nothing_minted(
    http: httpx.Client, redis_sync: redis.Redis, origin: str | bytes | None
) -> None:
    cookie = cookie_for("u")
    response = mint(http, cookie=cookie, origin=origin)
    assert_problem(response, 403, "origin_not_allowed")
    assert "access-control-allow-origin" not in response.headers
    assert cookie not in response.text
    assert ticket_keys(redis_sync) == []


def test_two_origin_headers_refused(http: httpx.Client, redis_sync: redis.Redis) -> None:
    response = http.post(
        MINT,
        headers=[
            ("Origin", APP_ORIGIN),
            ("Origin", APP_ORIGIN),
            ("Cookie", f"session={cookie_for('u')}"),
        ],
    )
    assert_problem(response, 403, "origin_not_allowed")
    assert ticket_keys(redis_sync) == []


def test_cross_site_fetch_refused(http: httpx.Client, redis_sync: redis.Redis) -> None:
    response = mint(http, cookie=cookie_for("u"), headers={"Sec-Fetch-Site": "cross-site"})
    assert_problem(response, 403, "cross_site")
    assert ticket_keys(redis_sync) == []


@pytest.mark.parametrize(
    ("cookie_header", "why"),
    [
        (None, "missing"),
        ("session=", "empty"),
        ("session=" + cookie_for("u")[:-2] + "xx", "tampered signature"),
        ("session=" + cookie_for("u").replace("eyJ", "eyK", 1), "tampered payload"),
        ("session=" + cookie_for("u", secret="test-only-other-key-abcdefghij0123456789"), "wrong"),
        ("session=" + cookie_for("u", secret=OLD_SECRET), "retired key"),
        (f"session={cookie_for('u')}; session={cookie_for('v')}", "duplicate"),
        ("session=" + cookie_for(True), "bool subject"),
        ("session=" + cookie_for(["u"]), "list subject"),
        ("session=" + cookie_for("u", key="uid"), "no subject"),
        ("session=" + "a" * 5000, "oversized"),
        ("other=" + cookie_for("u"), "other cookie name"),
    ],
)
def test_bad_session_is_401(
    http: httpx.Client, redis_sync: redis.Redis, cookie_header: str | None, why: str
) -> None:
    headers = {"Origin": APP_ORIGIN}
    if cookie_header is not None:
        headers["Cookie"] = cookie_header
    response = http.post(MINT, headers=headers)
    assert_problem(response, 401, "unauthenticated")
    assert response.headers["access-control-allow-origin"] == APP_ORIGIN  # readable by the app
    assert ticket_keys(redis_sync) == []


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "HEAD"])
def test_other_methods_are_405(http: httpx.Client, redis_sync: redis.Redis, method: str) -> None:
    response = http.request(
        method, MINT, headers={"Origin": APP_ORIGIN, "Cookie": f"session={cookie_for('u')}"}
    )
    assert response.status_code == 405
    assert "POST" in response.headers["allow"]
    if method != "HEAD":
        assert response.json()["code"] == "method_not_allowed"
    assert ticket_keys(redis_sync) == []


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        (
            {"content": b'{"audience":"chat"}', "headers": {"Content-Type": "text/plain"}},
            415,
            "unsupported_media_type",
        ),
        (
            {
                "content": b"audience=chat",
                "headers": {"Content-Type": "application/x-www-form-urlencoded"},
            },
            415,
            "unsupported_media_type",
        ),
        (
            {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
            400,
            "invalid_body",
        ),
        # Whitespace is not an empty body: JSON needs a value (schemathesis found \r\n minting).
        (
            {"content": b"\r\n", "headers": {"Content-Type": "application/json"}},
            400,
            "invalid_body",
        ),
        ({"content": b" ", "headers": {"Content-Type": "application/json"}}, 400, "invalid_body"),
        (
            {"content": b"\n", "headers": {"Content-Type": "text/plain"}},
            415,
            "unsupported_media_type",
        ),
        ({"json": {"audience": "chat", "admin": True}}, 400, "invalid_body"),
        ({"json": {"audience": 7}}, 400, "invalid_body"),
        ({"json": ["chat"]}, 400, "invalid_body"),
        ({"json": {"claims": {"x": "y" * 2000}}}, 400, "invalid_body"),
        ({"json": {"audience": "admin"}}, 400, "unknown_audience"),
        (
            {"content": b"{" + b" " * 9000 + b"}", "headers": {"Content-Type": "application/json"}},
            413,
            "body_too_large",
        ),
    ],
)
def test_bad_body_refused(
    http: httpx.Client, redis_sync: redis.Redis, kwargs: dict[str, Any], status: int, code: str
) -> None:
    response = mint(http, cookie=cookie_for("u"), **kwargs)
    assert_problem(response, status, code)
    assert ticket_keys(redis_sync) == []


def test_empty_body_without_content_type_is_fine(http: httpx.Client) -> None:
    assert mint(http, cookie=cookie_for("u"), content=b"").status_code == 201


def test_preflight_for_allowed_origin(http: httpx.Client) -> None:
    response = http.options(
        MINT,
        headers={
            "Origin": APP_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, x-evil",
        },
    )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == APP_ORIGIN
    assert response.headers["access-control-allow-credentials"] == "true"
    assert response.headers["access-control-allow-methods"] == "POST"
    assert response.headers["access-control-allow-headers"] == "content-type"
    assert "Origin" in response.headers["vary"]


@pytest.mark.parametrize("origin", ["https://evil.example", "null"])
def test_preflight_refused_for_other_origins(http: httpx.Client, origin: str) -> None:
    response = http.options(
        MINT, headers={"Origin": origin, "Access-Control-Request-Method": "POST"}
    )
    assert response.status_code == 403
    assert "access-control-allow-origin" not in response.headers


def test_logs_hold_no_secrets(http: httpx.Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    cookie = cookie_for("secret-subject")
    ok = mint(http, cookie=cookie)
    bad = mint(http, cookie=cookie + "x")
    evil = mint(http, cookie=cookie, origin="https://evil-origin.example")
    assert (ok.status_code, bad.status_code, evil.status_code) == (201, 401, 403)
    text = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "mint refused code=unauthenticated" in text
    assert cookie not in text
    assert ok.json()["ticket"] not in text
    assert "evil-origin" not in text


def test_the_minted_response_is_what_json_response_sends() -> None:
    """MintedResponse builds the 201 by hand: the same body bytes and the same headers,
    in the same order, as the ``JSONResponse`` it replaces."""
    from fastapi.responses import JSONResponse

    from ticketd.service.mint import MintedResponse

    body = {"ticket": "T" * 43, "expires_in": 30, "expires_at": 1.5e9 + 0.25, "audience": "ä"}
    origin = "https://app.example.com"
    reference = JSONResponse(
        body,
        status_code=201,
        headers={
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Credentials": "true",
            "Access-Control-Expose-Headers": "Retry-After",
            "Vary": "Origin, Cookie",
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "Pragma": "no-cache",
        },
    )
    minted = MintedResponse(body, origin)
    assert (minted.status_code, minted.body) == (reference.status_code, reference.body)
    assert minted.raw_headers == reference.raw_headers
