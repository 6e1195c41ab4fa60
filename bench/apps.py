"""The HTTP apps under test, as uvicorn factories configured by environment variables.

- ``bare``: a FastAPI endpoint returning a small JSON body (the framework's ceiling);
- ``naive``: what a team writes in an afternoon: verify an itsdangerous cookie,
  ``secrets.token_urlsafe(32)``, ``SET`` a JSON record with a default redis-py client;
- ``ticketd_app``: the real service from ``BENCH_REDIS_URL`` with high rate limits.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from typing import Any

import redis.asyncio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from itsdangerous import BadSignature, URLSafeTimedSerializer

SECRET = "bench-only-session-key-0123456789abcdefghij"
ORIGIN = "http://bench.localhost"


def bare() -> FastAPI:
    app = FastAPI()

    @app.post("/v1/tickets")
    async def endpoint() -> dict[str, Any]:
        return {"ticket": "x" * 43, "expires_in": 30}

    return app


def naive() -> FastAPI:
    app = FastAPI()
    client = redis.asyncio.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    serializer = URLSafeTimedSerializer(SECRET, salt="ticketd.session")

    @app.post("/v1/tickets")
    async def mint(request: Request) -> JSONResponse:
        try:
            session = serializer.loads(request.cookies.get("session", ""), max_age=3600)
        except BadSignature:
            return JSONResponse({"error": "unauthenticated"}, status_code=401)
        ticket = secrets.token_urlsafe(32)
        record = {
            "sub": session["user_id"],
            "origin": request.headers.get("origin"),
            "iat": time.time(),
        }
        await client.set(f"naive:{ticket}", json.dumps(record), ex=30)
        return JSONResponse({"ticket": ticket, "expires_in": 30}, status_code=201)

    return app


def ticketd_app(*, limits: bool = True) -> FastAPI:
    from ticketd.service import create_app
    from ticketd.service.settings import build_settings

    high = {
        "rate_limit_per_subject": "100000000/minute",
        "rate_limit_per_ip": "100000000/minute",
        "max_outstanding_per_subject": 100_000_000,
    }
    off = {
        "rate_limit_per_subject": "0",
        "rate_limit_per_ip": "0",
        "max_outstanding_per_subject": 0,
    }
    return create_app(
        build_settings(
            {
                "redis_url": os.environ["BENCH_REDIS_URL"],
                "allowed_origins": ORIGIN,
                "session_secret": SECRET,
                "service_keys": SECRET,
                "log_level": "warning",
                # bench.instructions runs the app under valgrind, some 50x slower.
                "store_deadline": float(os.environ.get("BENCH_STORE_DEADLINE", 1.0)),
                "redis_timeout": min(10.0, float(os.environ.get("BENCH_STORE_DEADLINE", 0.5))),
                **(high if limits else off),
            }
        )
    )


def ticketd_app_without_limits() -> FastAPI:
    """Not a target: shows what the three limit counters cost."""
    return ticketd_app(limits=False)


def post_scope(path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    """The ASGI scope of a ``POST path`` from loopback, for calling an app in-process."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 5555),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
