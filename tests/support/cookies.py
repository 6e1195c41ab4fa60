"""Session cookies set by the real Flask and Starlette apps."""

from __future__ import annotations

import warnings
from typing import Any

from flask import Flask, session
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

# Obviously fake, but it passes the service's secret checks.
KEY = "test-only-key-0123456789abcdefghijklmn"


def _cookie_from(set_cookie_headers: list[str], name: str = "session") -> str:
    """The value of cookie ``name`` from Set-Cookie headers (exactly one expected)."""
    values = [
        header.split(";", 1)[0].partition("=")[2]
        for header in set_cookie_headers
        if header.split("=", 1)[0].strip() == name
    ]
    assert len(values) == 1, set_cookie_headers
    return values[0]


def flask_cookie(data: dict[str, Any], *, secret: str = KEY) -> str:
    """A session cookie set by a real Flask app (SecureCookieSessionInterface)."""
    app = Flask("ticketd-test")
    app.config["SECRET_KEY"] = secret

    @app.route("/login")
    def login() -> str:
        for key, value in data.items():
            session[key] = value
        return "ok"

    with app.test_client() as client:
        response = client.get("/login")
        assert response.status_code == 200
        return _cookie_from(response.headers.getlist("Set-Cookie"))


def starlette_cookie(data: dict[str, Any], *, secret: str = KEY) -> str:
    """A session cookie set by a real Starlette app (SessionMiddleware)."""

    async def login(request: Request) -> PlainTextResponse:
        for key, value in data.items():
            request.session[key] = value
        return PlainTextResponse("ok")

    app = Starlette(
        routes=[Route("/login", login)],
        middleware=[Middleware(SessionMiddleware, secret_key=secret)],
    )
    with warnings.catch_warnings():
        # Starlette 1.x would rather use httpx2; httpx (installed) still works.
        warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
        from starlette.testclient import TestClient

    with TestClient(app) as client:
        response = client.get("/login")
        assert response.status_code == 200
        return _cookie_from(response.headers.get_list("set-cookie"))
