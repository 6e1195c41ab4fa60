"""Hostile input against the service and a real websockets server (issue "Hostile input").

Gap-fill: the cases already covered by test_service_mint/redeem/limits,
test_integrations_websockets and test_tickets are not repeated here. Every case asserts
the exact status and problem code, that nothing was minted or consumed where that
applies (ticket key count, or the victim ticket still redeemable), no 5xx, and that no
secret (ticket, cookie, Origin value) shows up in a response body or in a captured log.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import redis
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from websockets.asyncio.server import ServerConnection, serve

from tests.support.adapters import AUDIENCE, ORIGIN, ticket_env
from tests.support.cookies import flask_cookie, starlette_cookie
from tests.support.redisproc import RedisServer
from tests.support.service_support import (
    APP_ORIGIN,
    SECRET,
    SERVICE_KEY,
    cookie_for,
    make_settings,
    running_service,
    ticket_keys,
)
from ticketd import TicketVerifier
from ticketd.integrations.websockets import claims_of, select_subprotocol, ticket_auth
from ticketd.redaction import install_redaction, remove_redaction
from ticketd.sessions import TICKETD_SALT
from ticketd.tickets import new_ticket

MINT = "/v1/tickets"
REDEEM = "/v1/tickets/redeem"
TIMEOUT = 5.0
WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="

# --- secrets bookkeeping -------------------------------------------------------------------


@dataclass
class Secrets:
    """Values that must never appear in a response body or a log record."""

    values: list[str] = field(default_factory=list)

    def add(self, *values: str) -> None:
        self.values.extend(v for v in values if len(v) >= 8)

    def assert_absent(self, text: str, where: str) -> None:
        for value in self.values:
            assert value not in text, f"a secret ({len(value)} chars) leaked into {where}"


@pytest.fixture
def secrets_(caplog: pytest.LogCaptureFixture) -> Iterator[Secrets]:
    """Collect secrets during a test; at the end, none may be in any captured log record."""
    caplog.set_level(logging.DEBUG)
    install_redaction()  # as a deployment does: servers log request lines at DEBUG
    found = Secrets()
    try:
        yield found
    finally:
        remove_redaction()
    logged = "\n".join(
        f"{record.getMessage()} {record.__dict__} {record.exc_text or ''}"
        for phase in ("setup", "call")
        for record in caplog.get_records(phase)
    )
    found.assert_absent(logged, "the logs")


def getdel_calls(client: redis.Redis) -> int:
    """How many GETDEL commands this Redis has executed (proves "no round trip")."""
    stats: dict[str, Any] = client.info("commandstats")
    calls: int = stats.get("cmdstat_getdel", {}).get("calls", 0)
    return calls


# --- the HTTP service ----------------------------------------------------------------------


def mint(
    http: httpx.Client,
    secrets: Secrets,
    *,
    audience: str = "chat",
    origin: str = APP_ORIGIN,
    subject: object = 5,
) -> str:
    cookie = cookie_for(subject)
    response = http.post(
        MINT, json={"audience": audience}, headers={"Origin": origin, "Cookie": f"session={cookie}"}
    )
    assert response.status_code == 201, response.text
    ticket: str = response.json()["ticket"]
    secrets.add(ticket, cookie)
    return ticket


def redeem(http: httpx.Client, body: object, **headers: str) -> httpx.Response:
    return http.post(
        REDEEM,
        content=body if isinstance(body, bytes) else json.dumps(body).encode(),
        headers={
            "Authorization": f"Bearer {SERVICE_KEY}",
            "Content-Type": "application/json",
            **headers,
        },
    )


def assert_problem(response: httpx.Response, status: int, code: str, secrets: Secrets) -> None:
    assert response.status_code < 500, response.text
    assert (response.status_code, response.headers.get("content-type")) == (
        status,
        "application/problem+json",
    ), response.text
    body = response.json()
    assert (body["status"], body["code"], body["type"]) == (
        status,
        code,
        f"urn:ticketd:problem:{code}",
    )
    assert set(body) <= {"type", "title", "status", "code", "request_id"}
    secrets.assert_absent(response.text, "a response body")
    secrets.assert_absent(str(response.headers), "response headers")


def flip_case(ticket: str) -> str:
    """The first 42 characters case-flipped: still well formed, another ticket."""
    return ticket[:-1].swapcase() + ticket[-1]


# Hostile ticket values: (how to build it from a real ticket T, expected status, code).
# "malformed" ones must not reach Redis at all (no GETDEL).
HOSTILE_TICKETS: dict[str, tuple[Any, int, str]] = {
    "empty": (lambda t: "", 401, "malformed"),
    "truncated by one": (lambda t: t[:-1], 401, "malformed"),
    "truncated to 42 + padding": (lambda t: t[:-1] + "=", 401, "malformed"),
    "extended by one": (lambda t: t + "A", 401, "malformed"),
    "doubled": (lambda t: t + t, 401, "malformed"),
    "with whitespace": (lambda t: f" {t} ", 401, "malformed"),
    "case-flipped": (flip_case, 401, "invalid"),
    "glob *": (lambda t: "*", 401, "malformed"),
    "glob ?": (lambda t: "?", 401, "malformed"),
    "glob [a-z]": (lambda t: "[a-z]", 401, "malformed"),
    "hash tag {x}": (lambda t: "{x}", 401, "malformed"),
    "key pattern ticketd:*": (lambda t: "ticketd:*", 401, "malformed"),
    "43 glob chars": (lambda t: "*" * 43, 401, "malformed"),
    "43 chars with [a-z]": (lambda t: "[a-z]" + t[5:], 401, "malformed"),
    "43 chars with {x}": (lambda t: "{x}" + t[3:], 401, "malformed"),
    "prefix + ticket": (lambda t: "ticketd:" + t, 401, "malformed"),
    "CRLF FLUSHALL": (lambda t: "\r\nFLUSHALL\r\n", 401, "malformed"),
    "ticket + CRLF FLUSHALL": (lambda t: t + "\r\nFLUSHALL\r\n", 401, "malformed"),
    "RESP injection": (lambda t: "*1\r\n$8\r\nFLUSHALL\r\n", 401, "malformed"),
    "NUL": (lambda t: t[:-1] + "\x00", 401, "malformed"),
    "256 characters": (lambda t: "A" * 256, 401, "malformed"),
    "257 characters (schema limit)": (lambda t: "A" * 257, 400, "invalid_body"),
    "10 KB": (lambda t: "A" * 10_240, 413, "body_too_large"),
}


@pytest.mark.parametrize("case", list(HOSTILE_TICKETS), ids=list(HOSTILE_TICKETS))
def test_hostile_ticket_on_http_redeem(
    http: httpx.Client, redis_sync: redis.Redis, secrets_: Secrets, case: str
) -> None:
    make, status, code = HOSTILE_TICKETS[case]
    victim = mint(http, secrets_)
    before = getdel_calls(redis_sync)
    response = redeem(http, {"ticket": make(victim), "origin": APP_ORIGIN, "audience": "chat"})
    assert_problem(response, status, code, secrets_)
    if code != "invalid":
        assert getdel_calls(redis_sync) == before, "a refused-by-format ticket reached Redis"
    assert len(ticket_keys(redis_sync)) == 1, "the real ticket was consumed (or keys deleted)"
    ok = redeem(http, {"ticket": victim, "origin": APP_ORIGIN, "audience": "chat"})
    assert ok.status_code == 200, ok.text


def test_ticket_for_another_tenant_origin_is_burned(
    http: httpx.Client, redis_sync: redis.Redis, secrets_: Secrets
) -> None:
    # Both origins are on the allowlist (one wildcard): still not interchangeable.
    ticket = mint(http, secrets_, origin="https://a.tenants.example.com")
    response = redeem(
        http, {"ticket": ticket, "origin": "https://b.tenants.example.com", "audience": "chat"}
    )
    assert_problem(response, 403, "origin_mismatch", secrets_)
    assert ticket_keys(redis_sync) == []
    again = redeem(
        http, {"ticket": ticket, "origin": "https://a.tenants.example.com", "audience": "chat"}
    )
    assert_problem(again, 401, "invalid", secrets_)


# --- the websockets server with ticket_auth -----------------------------------------------


async def ws_handler(connection: ServerConnection) -> None:
    await connection.send(json.dumps({"subject": claims_of(connection).subject}))


@asynccontextmanager
async def ws_server(verifier: TicketVerifier) -> AsyncIterator[int]:
    async with serve(
        ws_handler,
        "127.0.0.1",
        0,
        process_request=ticket_auth(verifier),
        select_subprotocol=select_subprotocol,
    ) as server:
        yield next(iter(server.sockets)).getsockname()[1]


async def raw_handshake(
    port: int,
    target: str,
    *,
    origin: str | None = ORIGIN,
    extra: tuple[tuple[str, str], ...] = (),
) -> bytes:
    """Send an opening handshake by hand; return every byte the server sent back."""
    lines = [
        f"GET {target} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {WS_KEY}",
        "Sec-WebSocket-Version: 13",
        *([f"Origin: {origin}"] if origin is not None else []),
        *(f"{name}: {value}" for name, value in extra),
    ]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        await writer.drain()
        received = bytearray()
        async with asyncio.timeout(TIMEOUT):
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                received += chunk
                if received.startswith(b"HTTP/1.1 101 ") and b"\r\n\r\n" in received:
                    break  # accepted: the server keeps the connection open
        return bytes(received)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def status_of(response: bytes) -> int:
    assert response.startswith(b"HTTP/1.1 "), response[:80]
    return int(response[9:12])


def without_date(response: bytes) -> bytes:
    head, _, body = response.partition(b"\r\n\r\n")
    kept = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"date:")]
    return b"\r\n".join(kept) + b"\r\n\r\n" + body


# Same values through the handshake: (builder, transport, expected status).
# Query values are percent-encoded so that the request line stays legal HTTP.
WS_CASES: dict[str, tuple[Any, str, int]] = {
    "empty": (lambda t: "", "query", 401),
    "truncated": (lambda t: t[:-1], "query", 401),
    "extended": (lambda t: t + "A", "query", 401),
    "case-flipped": (flip_case, "query", 401),
    "glob *": (lambda t: "*", "query", 401),
    "glob ?": (lambda t: "?", "query", 401),
    "glob [a-z]": (lambda t: "[a-z]", "query", 401),
    "hash tag {x}": (lambda t: "{x}", "query", 401),
    "key pattern ticketd:*": (lambda t: "ticketd:*", "query", 401),
    "CRLF FLUSHALL": (lambda t: "\r\nFLUSHALL\r\n", "query", 401),
    "4 KB": (lambda t: "A" * 4096, "query", 401),
    "subprotocol truncated": (lambda t: t[:-1], "subprotocol", 401),
    "subprotocol case-flipped": (flip_case, "subprotocol", 401),
    "subprotocol glob *": (lambda t: "*", "subprotocol", 401),
    "subprotocol [a-z]": (lambda t: "[a-z]", "subprotocol", 401),
    "subprotocol {x}": (lambda t: "{x}", "subprotocol", 401),
    "subprotocol ticketd:*": (lambda t: "ticketd:*", "subprotocol", 401),
    "subprotocol empty": (lambda t: "", "subprotocol", 401),
}


@pytest.mark.parametrize("case", list(WS_CASES), ids=list(WS_CASES))
async def test_hostile_ticket_on_websocket_handshake(
    redis_url: str, redis_sync: redis.Redis, secrets_: Secrets, case: str
) -> None:
    make, transport, status = WS_CASES[case]
    async with ticket_env(redis_url) as env, ws_server(env.verifier) as port:
        victim = await env.mint()
        secrets_.add(victim)
        value = make(victim)
        before = getdel_calls(redis_sync)
        if transport == "query":
            response = await raw_handshake(port, "/ws?ticket=" + urllib.parse.quote(value, safe=""))
        else:
            response = await raw_handshake(
                port, "/ws", extra=(("Sec-WebSocket-Protocol", f"ticketd.v1, ticket.{value}"),)
            )
        assert status_of(response) == status, response[:200]
        assert response.endswith(b"\r\n\r\nticket rejected\n")
        secrets_.assert_absent(response.decode("latin-1"), "the handshake response")
        if case not in {"case-flipped", "subprotocol case-flipped"}:
            assert getdel_calls(redis_sync) == before, "a malformed ticket reached Redis"
        assert await env.stored(victim), "the real ticket was consumed"
        accepted = await raw_handshake(port, f"/ws?ticket={victim}")
        assert status_of(accepted) == 101


async def test_oversized_request_line_is_refused_before_the_hook(
    redis_url: str, redis_sync: redis.Redis, secrets_: Secrets
) -> None:
    # 10 KB in the query exceeds websockets' request-line limit: websockets answers
    # itself (no ticketd involvement), never 101, never 5xx, nothing consumed.
    async with ticket_env(redis_url) as env, ws_server(env.verifier) as port:
        victim = await env.mint()
        secrets_.add(victim)
        before = getdel_calls(redis_sync)
        response = await raw_handshake(port, "/ws?ticket=" + "A" * 10_240)
        assert status_of(response) == 414, response[:200]
        assert b"ticket rejected" not in response
        assert getdel_calls(redis_sync) == before
        assert await env.stored(victim)


@pytest.mark.parametrize(
    ("binding", "status"),
    [("audience", 403), ("origin", 403)],
)
async def test_ticket_for_another_audience_or_origin_is_burned_on_handshake(
    redis_url: str, secrets_: Secrets, binding: str, status: int
) -> None:
    async with ticket_env(redis_url) as env, ws_server(env.verifier) as port:
        if binding == "audience":
            issued = await env.issuer.mint("u1", origin=ORIGIN, audience="billing")
            ticket, presenting_origin = issued.ticket, ORIGIN
        else:  # minted for a sibling origin, presented from ours
            ticket = await env.mint(origin="https://sibling.app.example")
            presenting_origin = ORIGIN
        secrets_.add(ticket)
        response = await raw_handshake(port, f"/ws?ticket={ticket}", origin=presenting_origin)
        assert status_of(response) == status
        assert not await env.stored(ticket), "a ticket refused on binding must be burned"
        replay = await raw_handshake(port, f"/ws?ticket={ticket}", origin=presenting_origin)
        assert status_of(replay) == 401


# --- uniform failure: unknown, expired and used tickets look the same ---------------------


async def test_unknown_expired_and_used_tickets_are_indistinguishable(
    redis_url: str, redis_sync: redis.Redis, secrets_: Secrets
) -> None:
    """On the WS handshake (raw bytes minus Date) and on HTTP redeem (body minus request_id).

    One service with ``ticket_ttl=1`` and one 2-second wait serve both paths; a ticket
    presented right away ("just in time") is accepted by both.
    """
    settings = make_settings(redis_url, ticket_ttl=1)
    with running_service(settings) as base:
        async with (
            ticket_env(redis_url) as env,
            ws_server(env.verifier) as port,
            httpx.AsyncClient(base_url=base, timeout=10) as http,
        ):

            async def http_mint() -> str:
                cookie = cookie_for(9)
                response = await http.post(
                    MINT, headers={"Origin": APP_ORIGIN, "Cookie": f"session={cookie}"}
                )
                assert response.status_code == 201, response.text
                assert response.json()["expires_in"] == 1
                ticket: str = response.json()["ticket"]
                secrets_.add(ticket, cookie)
                return ticket

            async def http_redeem(ticket: str) -> httpx.Response:
                return await http.post(
                    REDEEM,
                    json={"ticket": ticket, "origin": APP_ORIGIN, "audience": "chat"},
                    headers={"Authorization": f"Bearer {SERVICE_KEY}"},
                )

            async def ws_mint() -> str:
                ticket = await env.issuer.mint("u1", origin=ORIGIN, audience=AUDIENCE, ttl=1)
                secrets_.add(ticket.ticket)
                return ticket.ticket

            # Mint the to-be-expired tickets first, then the just-in-time ones.
            http_expired, ws_expired = await http_mint(), await ws_mint()
            http_jit, ws_jit = await http_mint(), await ws_mint()
            assert (await http_redeem(http_jit)).status_code == 200
            assert status_of(await raw_handshake(port, f"/ws?ticket={ws_jit}")) == 101
            http_used, ws_used = http_jit, ws_jit  # now used
            started = time.monotonic()
            await asyncio.sleep(2.0)  # TTL + 1 s
            assert time.monotonic() - started >= 2.0
            assert len(ticket_keys(redis_sync)) == 0
            http_unknown, ws_unknown = new_ticket(), new_ticket()

            ws = {
                name: await raw_handshake(port, f"/ws?ticket={ticket}")
                for name, ticket in {
                    "unknown": ws_unknown,
                    "expired": ws_expired,
                    "used": ws_used,
                }.items()
            }
            https = {
                name: await http_redeem(ticket)
                for name, ticket in {
                    "unknown": http_unknown,
                    "expired": http_expired,
                    "used": http_used,
                }.items()
            }

    for name, raw in ws.items():
        assert status_of(raw) == 401, (name, raw[:200])
    normalised = {name: without_date(raw) for name, raw in ws.items()}
    assert normalised["unknown"] == normalised["expired"] == normalised["used"], normalised

    for response in https.values():
        assert_problem(response, 401, "invalid", secrets_)
    bodies = {
        name: {k: v for k, v in r.json().items() if k != "request_id"} for name, r in https.items()
    }
    assert bodies["unknown"] == bodies["expired"] == bodies["used"], bodies
    heads = {
        name: sorted(
            (k, v) for k, v in r.headers.items() if k.lower() not in {"date", "x-request-id"}
        )
        for name, r in https.items()
    }
    assert heads["unknown"] == heads["expired"] == heads["used"], heads


# --- session cookies -----------------------------------------------------------------------


def _future_cookie(subject: object) -> str:
    class Future(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) + 3600

    return URLSafeTimedSerializer(SECRET, salt=TICKETD_SALT, signer=Future).dumps(
        {"user_id": subject}
    )


@pytest.fixture(scope="module")
def flask_service(redis_server: RedisServer) -> Iterator[str]:
    with running_service(make_settings(redis_server.url, session_format="flask")) as base:
        yield base


@pytest.fixture(scope="module")
def starlette_service(redis_server: RedisServer) -> Iterator[str]:
    with running_service(make_settings(redis_server.url, session_format="starlette")) as base:
        yield base


COOKIE_CASES: dict[str, tuple[str, Any, int]] = {
    # (service, cookie builder, expected status); 201 rows are the positive controls.
    "ticketd: future-dated": ("ticketd", lambda: _future_cookie("u"), 401),
    "flask cookie to flask service": (
        "flask",
        lambda: flask_cookie({"user_id": 3}, secret=SECRET),
        201,
    ),
    "flask cookie to starlette service": (
        "starlette",
        lambda: flask_cookie({"user_id": 3}, secret=SECRET),
        401,
    ),
    "starlette cookie to starlette service": (
        "starlette",
        lambda: starlette_cookie({"user_id": 3}, secret=SECRET),
        201,
    ),
    "starlette cookie to flask service": (
        "flask",
        lambda: starlette_cookie({"user_id": 3}, secret=SECRET),
        401,
    ),
    "starlette cookie to ticketd service": (
        "ticketd",
        lambda: starlette_cookie({"user_id": 3}, secret=SECRET),
        401,
    ),
    "flask cookie without subject": (
        "flask",
        lambda: flask_cookie({"cart": [1]}, secret=SECRET),
        401,
    ),
    "starlette cookie without subject": (
        "starlette",
        lambda: starlette_cookie({"cart": [1]}, secret=SECRET),
        401,
    ),
    "flask cookie with empty subject": (
        "flask",
        lambda: flask_cookie({"user_id": ""}, secret=SECRET),
        401,
    ),
    "starlette cookie with null subject": (
        "starlette",
        lambda: starlette_cookie({"user_id": None}, secret=SECRET),
        401,
    ),
}


@pytest.mark.parametrize("case", list(COOKIE_CASES), ids=list(COOKIE_CASES))
def test_session_cookie_cases(
    case: str,
    service: str,
    flask_service: str,
    starlette_service: str,
    redis_sync: redis.Redis,
    secrets_: Secrets,
) -> None:
    target, make, status = COOKIE_CASES[case]
    base = {"ticketd": service, "flask": flask_service, "starlette": starlette_service}[target]
    cookie = make()
    secrets_.add(cookie)
    response = httpx.post(
        f"{base}{MINT}", headers={"Origin": APP_ORIGIN, "Cookie": f"session={cookie}"}, timeout=10
    )
    if status == 201:
        assert response.status_code == 201, response.text
        secrets_.add(response.json()["ticket"])
        assert len(ticket_keys(redis_sync)) == 1
    else:
        assert_problem(response, status, "unauthenticated", secrets_)
        assert ticket_keys(redis_sync) == []


# --- HTTP oddities -------------------------------------------------------------------------


def _nested(depth: int) -> bytes:
    return b'{"claims":{"a":' + b"[" * depth + b"]" * depth + b"}}"


JSON = {"Content-Type": "application/json"}
MINT_CASES: dict[str, tuple[dict[str, Any], int, str]] = {
    # (request kwargs, expected status, code)
    "10,000 nested arrays": (
        {"content": b"[" * 10_000 + b"]" * 10_000, "headers": JSON},
        413,
        "body_too_large",
    ),
    "3,000 nested arrays in claims (under the size limit)": (
        {"content": _nested(3000), "headers": JSON},
        400,
        "invalid_body",
    ),
    "10,000 nested arrays, chunked (no Content-Length)": (
        {"content": iter([b"[" * 5000, b"[" * 5000, b"]" * 10_000]), "headers": JSON},
        413,
        "body_too_large",
    ),
    "unknown top-level field": (
        {"json": {"audience": "chat", "__proto__": {"admin": True}}},
        400,
        "invalid_body",
    ),
    "field name in another case": ({"json": {"Audience": "chat"}}, 400, "invalid_body"),
    "claims one byte over 1 KiB": (
        {"json": {"claims": {"k": "x" * (1024 - len('{"k":""}') + 1)}}},
        400,
        "invalid_body",
    ),
    "claims with NaN": ({"content": b'{"claims":{"x":NaN}}', "headers": JSON}, 400, "invalid_body"),
    "claims with 1e400": (
        {"content": b'{"claims":{"x":1e400}}', "headers": JSON},
        400,
        "invalid_body",
    ),
    "claims with a 5000-digit integer": (
        {"content": b'{"claims":{"x":' + b"9" * 5000 + b"}}", "headers": JSON},
        400,
        "invalid_body",
    ),
    "invalid UTF-8": (
        {"content": b'{"audience":"\xff\xfe"}', "headers": JSON},
        400,
        "invalid_body",
    ),
    "charset=latin-1": (
        {
            "content": b'{"audience":"chat"}',
            "headers": {"Content-Type": "application/json; charset=latin-1"},
        },
        415,
        "unsupported_media_type",
    ),
    "application/jsonx": (
        {"content": b'{"audience":"chat"}', "headers": {"Content-Type": "application/jsonx"}},
        415,
        "unsupported_media_type",
    ),
    "9000-byte body": (
        {"content": b"x" * 9000, "headers": JSON},
        413,
        "body_too_large",
    ),
}


@pytest.mark.parametrize("case", list(MINT_CASES), ids=list(MINT_CASES))
def test_hostile_mint_bodies(
    http: httpx.Client, redis_sync: redis.Redis, secrets_: Secrets, case: str
) -> None:
    kwargs, status, code = MINT_CASES[case]
    cookie = cookie_for("mallory")
    secrets_.add(cookie)
    headers = {"Origin": APP_ORIGIN, "Cookie": f"session={cookie}", **kwargs.get("headers", {})}
    response = http.post(MINT, **{**kwargs, "headers": headers})
    assert_problem(response, status, code, secrets_)
    assert ticket_keys(redis_sync) == []


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        ("application/json; charset=utf-8", 201),
        ('APPLICATION/JSON; charset="UTF-8"', 201),
        ("application/json; charset=latin-1", 415),
        ("application/json; charset=utf-16", 415),
    ],
)
def test_charset_parameter(
    http: httpx.Client, redis_sync: redis.Redis, secrets_: Secrets, content_type: str, status: int
) -> None:
    cookie = cookie_for("u")
    secrets_.add(cookie)
    response = http.post(
        MINT,
        content=b'{"audience":"chat"}',
        headers={"Origin": APP_ORIGIN, "Cookie": f"session={cookie}", "Content-Type": content_type},
    )
    assert response.status_code == status, response.text
    assert len(ticket_keys(redis_sync)) == (1 if status == 201 else 0)
    if status == 201:
        secrets_.add(response.json()["ticket"])
        return
    assert_problem(response, 415, "unsupported_media_type", secrets_)


def test_claims_of_exactly_one_kib_are_accepted(
    http: httpx.Client, redis_sync: redis.Redis, secrets_: Secrets
) -> None:
    # The boundary the 1-byte-over case above is measured from.
    claims = {"k": "x" * (1024 - len('{"k":""}'))}
    cookie = cookie_for("u")
    secrets_.add(cookie)
    response = http.post(
        MINT, json={"claims": claims}, headers={"Origin": APP_ORIGIN, "Cookie": f"session={cookie}"}
    )
    assert response.status_code == 201, response.text
    ticket = response.json()["ticket"]
    secrets_.add(ticket)
    claimed = redeem(http, {"ticket": ticket, "origin": APP_ORIGIN, "audience": "chat"})
    assert claimed.json()["extra"] == claims


@pytest.mark.parametrize(
    ("name", "size", "status", "code"),
    [
        ("Cookie", 64 * 1024, 401, "unauthenticated"),
        ("Origin", 64 * 1024, 403, "origin_not_allowed"),
        ("X-Padding", 64 * 1024, 401, "unauthenticated"),
    ],
)
def test_huge_headers_are_refused_without_5xx(
    http: httpx.Client,
    redis_sync: redis.Redis,
    secrets_: Secrets,
    name: str,
    size: int,
    status: int,
    code: str,
) -> None:
    headers = {"Origin": APP_ORIGIN}
    if name == "Cookie":
        # a valid session cookie hidden behind 64 KB of other cookies: the header as a
        # whole is absurd, but the one session cookie in it is fine
        headers["Cookie"] = "junk=" + "a" * size + "; session=" + base64.b64encode(b"x").decode()
    elif name == "Origin":
        headers["Origin"] = "https://" + "a" * size + ".example.com"
    else:
        headers[name] = "a" * size
    secrets_.add(headers.get("Cookie", ""))
    if name == "Origin":  # the allowed origin itself is echoed in CORS headers by design
        secrets_.add(headers["Origin"])
    response = http.post(MINT, headers=headers)
    assert_problem(response, status, code, secrets_)
    assert ticket_keys(redis_sync) == []


REDEEM_BODY_CASES: dict[str, tuple[bytes, dict[str, str], int, str]] = {
    "10,000 nested arrays": (b"[" * 10_000 + b"]" * 10_000, {}, 413, "body_too_large"),
    "3,000 nested arrays": (b"[" * 3000 + b"]" * 3000, {}, 400, "invalid_body"),
    "nested in the ticket field": (
        b'{"ticket":' + b"[" * 3000 + b"]" * 3000 + b"}",
        {},
        400,
        "invalid_body",
    ),
    "charset=latin-1": (
        b'{"ticket":"x","origin":"https://app.example.com"}',
        {"Content-Type": "application/json; charset=latin-1"},
        415,
        "unsupported_media_type",
    ),
    "ticket as a number": (b'{"ticket":1e400}', {}, 400, "invalid_body"),
    "duplicate ticket key": (
        b'{"ticket":"a","ticket":"b","audience":"chat"}',
        {},
        401,
        "malformed",
    ),
    "empty body": (b"", {}, 400, "invalid_body"),
}


@pytest.mark.parametrize("case", list(REDEEM_BODY_CASES), ids=list(REDEEM_BODY_CASES))
def test_hostile_redeem_bodies(
    http: httpx.Client, redis_sync: redis.Redis, secrets_: Secrets, case: str
) -> None:
    body, headers, status, code = REDEEM_BODY_CASES[case]
    mint(http, secrets_)
    response = redeem(http, body, **headers)
    assert_problem(response, status, code, secrets_)
    assert len(ticket_keys(redis_sync)) == 1
