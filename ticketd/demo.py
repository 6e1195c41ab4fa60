"""``python -m ticketd.demo``: the whole ticket flow on one port, nothing to set up.

One FastAPI app (ticketd's own :func:`~ticketd.service.create_app`) serves

- ``GET /`` — a demo page (``ticketd/static/demo.html``) using ``/v1/client.js``;
- ``POST /demo/login`` / ``/demo/logout`` — set or clear a ticketd-format session
  cookie (:func:`~ticketd.sessions.issue_session_cookie`), standing in for your app's login;
- ``POST /demo/revoke`` — revoke the cookie's login (the page's "Log out" calls it first),
  which closes its open sockets with 4403 (:mod:`ticketd.liveness`);
- ``POST /v1/tickets`` — the real mint endpoint;
- ``/ws`` — a chat WebSocket protected by the verifier, through the Starlette/FastAPI
  dependency (:func:`~ticketd.integrations.starlette.require_ticket`).

Why one app on one port: the page, the mint endpoint and the socket share an origin,
so there is no CORS to configure, and the mint endpoint and the WebSocket route share
one embedded store: a single ``fakeredis.FakeAsyncRedis`` given both to ``create_app``
and to the route's ``TicketVerifier``. A real deployment runs the service and the WS
backend apart, on one Redis. The session secret is generated at start: restarting
logs everyone out. Development only.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
from collections.abc import Sequence
from importlib import resources

import fakeredis
import uvicorn
from fastapi import Depends, FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse, JSONResponse, Response

from . import Claims, TicketStore, TicketVerifier
from .integrations.asgi import ticket_subprotocol
from .integrations.starlette import install, require_ticket
from .liveness import RevocationWatch
from .revocation import session_ref
from .revoker import Revoker
from .service import create_app
from .service.logconfig import configure_logging, logging_config
from .service.settings import build_settings
from .sessions import SessionInvalid, cookie_values, issue_session_cookie

__all__ = ["build_demo", "demo_origins", "main"]

AUDIENCE = "chat"
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,32}")


def demo_origins(host: str, port: int) -> list[str]:
    """The origins a browser may use to reach the demo: loopback names, and ``host`` itself."""
    hosts = ["127.0.0.1", "localhost"]
    if host not in ("", "0.0.0.0", "::", *hosts):  # noqa: S104 - wildcard is not an origin
        hosts.append(f"[{host}]" if ":" in host else host)
    return [f"http://{h}:{port}" for h in hosts]


def build_demo(host: str, port: int, *, secret: str | None = None) -> FastAPI:
    """The demo app; ``secret`` defaults to a fresh random session secret."""
    secret = secret or secrets.token_urlsafe(32)
    settings = build_settings(
        {
            "allowed_origins": ",".join(demo_origins(host, port)),
            "session_secret": secret,
            "audiences": AUDIENCE,
            "log_format": "text",
        }
    )
    store = fakeredis.FakeAsyncRedis()  # one embedded store for the mint and the verifier
    app = create_app(settings, redis_client=store)
    verifier = TicketVerifier(TicketStore(store), key_prefix=settings.key_prefix, audience=AUDIENCE)
    install(app)  # refusals answer 401/403 before 101 instead of a bare close
    # Revocation: "Log out" revokes this login, which closes its sockets with 4403.
    watch = RevocationWatch(store, key_prefix=settings.key_prefix)
    revoker = Revoker(store, key_prefix=settings.key_prefix, ttl=settings.session_max_age)
    ticket = require_ticket(verifier, watch=watch)
    allowlist = settings.allowlist()
    room: set[WebSocket] = set()

    async def page(request: Request) -> Response:
        html = resources.files("ticketd").joinpath("static/demo.html").read_text("utf-8")
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    async def login(request: Request) -> Response:
        # Like any login form, refuse other sites (login CSRF).
        if not allowlist.allows(request.headers.get("origin", "")):
            return JSONResponse({"error": "origin not allowed"}, status_code=403)
        try:
            name = json.loads(await request.body()).get("name", "")
        except (ValueError, AttributeError):
            name = ""
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            return JSONResponse({"error": "name: 1-32 of A-Z a-z 0-9 _ . -"}, status_code=400)
        response = JSONResponse({"user": name})
        response.set_cookie(
            settings.session_cookie,
            issue_session_cookie({settings.session_subject_key: name}, secret=secret),
            max_age=settings.session_max_age,
            httponly=True,
            samesite="lax",
        )
        return response

    async def logout(request: Request) -> Response:
        response = JSONResponse({"user": None})
        response.delete_cookie(settings.session_cookie, httponly=True, samesite="lax")
        return response

    async def revoke(request: Request) -> Response:
        """Revoke the login of the session cookie (its signing time identifies it)."""
        if not allowlist.allows(request.headers.get("origin", "")):
            return JSONResponse({"error": "origin not allowed"}, status_code=403)
        values = cookie_values(request.headers.getlist("cookie"), settings.session_cookie)
        sessions = app.state.service.sessions
        try:
            (value,) = values
            subject = sessions.subject_from(value)
        except (ValueError, SessionInvalid):
            return JSONResponse({"revoked": False})
        login = session_ref(
            sessions.load(value), value, max_age=settings.session_max_age, session_id_key=None
        )
        await revoker.revoke(subject, session=login.session, reason="demo logout")
        return JSONResponse({"revoked": True})

    async def broadcast(message: dict[str, str]) -> None:
        for peer in list(room):
            try:
                await peer.send_text(json.dumps(message))
            except (WebSocketDisconnect, RuntimeError, OSError):  # the peer went away
                room.discard(peer)

    async def chat(websocket: WebSocket, claims: Claims = Depends(ticket)) -> None:  # noqa: B008
        # Accept with "ticketd.v1" when the ticket came as a subprotocol, else none.
        await websocket.accept(subprotocol=ticket_subprotocol(websocket.scope))
        who = str(claims.subject)
        room.add(websocket)
        await broadcast({"text": f"{who} joined ({len(room)} online)"})
        try:
            while True:
                text = (await websocket.receive_text())[:500]
                await broadcast({"from": who, "text": text})
        except WebSocketDisconnect:
            pass
        finally:
            room.discard(websocket)
            await broadcast({"text": f"{who} left"})

    app.add_api_route("/", page, methods=["GET"], include_in_schema=False)
    app.add_api_route("/demo/login", login, methods=["POST"], include_in_schema=False)
    app.add_api_route("/demo/logout", logout, methods=["POST"], include_in_schema=False)
    app.add_api_route("/demo/revoke", revoke, methods=["POST"], include_in_schema=False)
    app.add_api_websocket_route("/ws", chat)
    return app


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ticketd.demo", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    app = build_demo(args.host, args.port)
    configure_logging("info", "text")
    first, *others = demo_origins(args.host, args.port)
    print(
        "\nticketd demo (embedded store, generated session secret; development only)\n"
        f"  open {first}/  (or {', '.join(others)})\n"
        "  log in, connect, chat; open a second tab to talk to yourself\n",
        flush=True,
    )
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_config=logging_config("info", "text"),
        proxy_headers=False,
        server_header=False,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
