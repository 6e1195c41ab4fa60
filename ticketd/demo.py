"""``ticketd demo``: the whole ticket flow in a browser, and what ticketd refuses.

The demo app serves

- ``GET /`` — the demo page (``ticketd/static/demo.html``), which uses ``/v1/client.js``;
- ``POST /demo/login`` / ``/demo/logout`` — set or clear a ticketd-format session cookie
  (:func:`~ticketd.sessions.issue_session_cookie`), standing in for your app's login;
- ``/ws`` — a chat WebSocket protected by the verifier, through the Starlette/FastAPI
  dependency (:func:`~ticketd.integrations.starlette.require_ticket`);
- ``GET /demo/attempts/{id}`` — how the handshake tagged ``?attempt=id`` ended (101, or the
  refusal status; its reason only with ``--dev``): a browser sees a refused handshake only
  as close code 1006, so the page asks the server, as you would read its log;
- ``POST /demo/foreign`` — presents a ticket from another origin (``https://evil.example``),
  in a real handshake from the server to its own ``/ws``: what a stolen ticket is worth.

Two ways to run it:

- **embedded** (``make demo``): the demo is also the ticketd service (``create_app``) on the
  same port, and the mint endpoint and the WebSocket route share one in-process store. The
  session secret is generated at start: restarting logs everyone out.
- **against a ticketd** (``--mint-url``, as in ``deploy/compose.yaml``): the page mints at
  that ticketd, and the demo reads the same ``TICKETD_*`` settings (Redis, session secret,
  audience) to sign the login cookie and verify tickets. Development only, either way.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import sys
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import fakeredis
import uvicorn
from fastapi import Depends, FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse, JSONResponse, Response

from . import Claims, TicketStore, TicketVerifier
from .integrations.asgi import ticket_subprotocol
from .integrations.starlette import TicketDenied, install, require_ticket
from .service import Settings, create_app
from .service.logconfig import configure_logging, logging_config
from .service.settings import ConfigError, build_settings, load_settings
from .sessions import issue_session_cookie

__all__ = ["AUDIENCE", "FOREIGN_ORIGIN", "build_demo", "demo_origins", "main", "run"]

AUDIENCE = "chat"
FOREIGN_ORIGIN = "https://evil.example"
"""The origin :func:`build_demo`'s ``/demo/foreign`` presents tickets from."""

_NAME = re.compile(r"[A-Za-z0-9_.-]{1,32}")
_ATTEMPT = re.compile(r"[A-Za-z0-9_-]{1,40}")
_KEEP_ATTEMPTS = 200


def demo_origins(host: str, port: int) -> list[str]:
    """The origins a browser may use to reach the demo: loopback names, and ``host`` itself."""
    hosts = ["127.0.0.1", "localhost"]
    if host not in ("", "0.0.0.0", "::", *hosts):  # noqa: S104 - wildcard is not an origin
        hosts.append(f"[{host}]" if ":" in host else host)
    return [f"http://{h}:{port}" for h in hosts]


@dataclass
class _Attempts:
    """How recent handshakes ended, by the page's attempt id (bounded)."""

    dev: bool
    seen: OrderedDict[str, dict[str, Any]]

    def record(self, attempt: str, status: int, reason: str | None) -> None:
        if not _ATTEMPT.fullmatch(attempt):
            return
        self.seen[attempt] = {"status": status, "reason": reason if self.dev else None}
        while len(self.seen) > _KEEP_ATTEMPTS:
            self.seen.popitem(last=False)


def build_demo(
    host: str,
    port: int,
    *,
    secret: str | None = None,
    dev: bool = True,
    ttl: float = 10.0,
    mint_url: str | None = None,
    settings: Settings | None = None,
) -> FastAPI:
    """The demo app.

    Embedded (``mint_url`` is ``None``): the ticketd service on the same app and store;
    ``secret`` defaults to a fresh random session secret. Otherwise the page mints at
    ``mint_url`` and ``settings`` (Redis, secret, audience) must match that ticketd's.
    """
    if mint_url is None:
        settings = build_settings(
            {
                "allowed_origins": ",".join(demo_origins(host, port)),
                "session_secret": secret or secrets.token_urlsafe(32),
                "audiences": AUDIENCE,
                "log_format": "text",
                "ticket_ttl": ttl,
            }
        )
        store = fakeredis.FakeAsyncRedis()  # one embedded store for the mint and the verifier
        app = create_app(settings, redis_client=store)
        verifier = TicketVerifier(
            TicketStore(store), key_prefix=settings.key_prefix, audience=AUDIENCE
        )
    else:
        if settings is None or settings.redis_url is None:
            raise ValueError("a demo against a ticketd needs its settings, with TICKETD_REDIS_URL")
        app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
        app.add_api_route("/v1/client.js", _client_js, methods=["GET"], include_in_schema=False)
        verifier = TicketVerifier.from_url(
            settings.redis_url, key_prefix=settings.key_prefix, audience=settings.audiences[0]
        )
    assert settings.session_secret is not None  # validated as required
    _add_routes(
        app,
        settings,
        verifier,
        page_config={
            "mintUrl": mint_url or "/v1/tickets",
            "audience": settings.audiences[0],
            "dev": dev,
            "foreignOrigin": FOREIGN_ORIGIN,
        },
        self_url=f"ws://{_loopback(host)}:{port}/ws",
        attempts=_Attempts(dev, OrderedDict()),
    )
    return app


async def _client_js(request: Request) -> Response:
    """The browser client, as ticketd serves it (the page imports it from its own origin)."""
    source = resources.files("ticketd").joinpath("static/ticketd-client.js").read_bytes()
    return Response(source, media_type="text/javascript; charset=utf-8")


def _loopback(host: str) -> str:
    if host in ("", "0.0.0.0", "localhost"):  # noqa: S104 - wildcard is not an address
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _add_routes(
    app: FastAPI,
    settings: Settings,
    verifier: TicketVerifier,
    *,
    page_config: dict[str, Any],
    self_url: str,
    attempts: _Attempts,
) -> None:
    install(app)  # refusals answer 401/403 before 101 instead of a bare close
    ticket = require_ticket(verifier)
    allowlist = settings.allowlist()
    assert settings.session_secret is not None
    secret = settings.session_secret.get_secret_value()
    room: set[WebSocket] = set()

    async def page(request: Request) -> Response:
        html = resources.files("ticketd").joinpath("static/demo.html").read_text("utf-8")
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    async def config(request: Request) -> Response:
        return JSONResponse(page_config, headers={"Cache-Control": "no-store"})

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

    async def attempt(request: Request) -> Response:
        found = attempts.seen.get(request.path_params["attempt"])
        if found is None:
            return JSONResponse({"status": None}, status_code=404)
        return JSONResponse(found, headers={"Cache-Control": "no-store"})

    async def foreign(request: Request) -> Response:
        try:
            body = json.loads(await request.body())
            presented, tag = str(body["ticket"]), str(body["attempt"])
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": "ticket and attempt required"}, status_code=400)
        if not _ATTEMPT.fullmatch(tag):
            return JSONResponse({"error": "bad attempt id"}, status_code=400)
        status = await _handshake_from(FOREIGN_ORIGIN, f"{self_url}?attempt={tag}", presented)
        found = attempts.seen.get(tag, {"status": status, "reason": None})
        return JSONResponse(found, headers={"Cache-Control": "no-store"})

    async def checked(websocket: WebSocket) -> Claims:
        tag = websocket.query_params.get("attempt", "")
        try:
            claims = await ticket(websocket)
        except TicketDenied as exc:
            reason = exc.denied.reason
            attempts.record(tag, exc.denied.status, reason.value if reason else "store_unavailable")
            raise
        attempts.record(tag, 101, None)
        return claims

    async def broadcast(message: dict[str, str]) -> None:
        for peer in list(room):
            try:
                await peer.send_text(json.dumps(message))
            except (WebSocketDisconnect, RuntimeError, OSError):  # the peer went away
                room.discard(peer)

    async def chat(websocket: WebSocket, claims: Claims = Depends(checked)) -> None:  # noqa: B008
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
    app.add_api_route("/demo/config", config, methods=["GET"], include_in_schema=False)
    app.add_api_route("/demo/login", login, methods=["POST"], include_in_schema=False)
    app.add_api_route("/demo/logout", logout, methods=["POST"], include_in_schema=False)
    app.add_api_route("/demo/attempts/{attempt}", attempt, methods=["GET"], include_in_schema=False)
    app.add_api_route("/demo/foreign", foreign, methods=["POST"], include_in_schema=False)
    app.add_api_websocket_route("/ws", chat)


async def _handshake_from(origin: str, url: str, ticket: str) -> int:
    """Open ``url`` with ``ticket`` as a page on ``origin`` would; the handshake's status."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus, WebSocketException
    from websockets.typing import Origin, Subprotocol

    protocols = [Subprotocol("ticketd.v1"), Subprotocol(f"ticket.{ticket}")]
    try:
        async with connect(url, origin=Origin(origin), subprotocols=protocols, open_timeout=5):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code
    except (TimeoutError, WebSocketException, OSError):
        return 0


def run(args: argparse.Namespace) -> int:
    """Run the demo with the options of :func:`ticketd.service.cli.add_demo_arguments`."""
    settings = None
    if args.mint_url is not None:
        try:
            settings = load_settings()
        except ConfigError as exc:
            for line in exc.problems:
                print(f"ticketd demo: configuration error: {line}", file=sys.stderr)
            return 2
        if settings.redis_url is None:
            print(
                "ticketd demo: --mint-url needs TICKETD_REDIS_URL (the Redis of that ticketd)",
                file=sys.stderr,
            )
            return 2
    app = build_demo(
        args.host, args.port, dev=args.dev, ttl=args.ttl, mint_url=args.mint_url, settings=settings
    )
    configure_logging("info", "text")
    first, *others = demo_origins(args.host, args.port)
    store = "embedded store" if args.mint_url is None else f"minting at {args.mint_url}"
    banner = (
        f"\nticketd demo ({store}; development only)\n"
        f"  open {first}/  (or {', '.join(others)})\n"
        "  sign in, mint, connect; then replay, expire, or try a ticket from another origin\n"
    )
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=args.host,
            port=args.port,
            log_config=logging_config("info", "text"),
            proxy_headers=False,
            server_header=False,
        )
    )
    try:
        _run_announced(server, banner)
    except KeyboardInterrupt:
        return 130
    return 0


def _run_announced(server: uvicorn.Server, banner: str) -> None:
    """``server.run()``, printing ``banner`` once the port is bound."""
    startup: Callable[..., Awaitable[None]] = server.startup

    async def announced(sockets: Any = None) -> None:
        await startup(sockets)
        if server.started:
            print(banner, file=sys.stderr, flush=True)

    server.startup = announced  # type: ignore[method-assign]
    server.run()


def main(argv: Sequence[str] | None = None) -> int:
    from .service.cli import add_demo_arguments

    parser = argparse.ArgumentParser(prog="python -m ticketd.demo", description=__doc__)
    add_demo_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
