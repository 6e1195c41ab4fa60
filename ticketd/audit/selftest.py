"""``ticketd audit --self-test``: every check can fail, and a correct ticketd passes them all.

1. Against :class:`~ticketd.audit.weak.WeakServer` with no weakness: all pass (the
   weak server's own control).
2. Against it with each weakness of :data:`~ticketd.audit.weak.WEAKNESSES` switched
   on alone: exit 1, and at least the checks of :data:`EXPECTED` flagged. Every
   non-control check of the catalog must be flagged by at least one weakness.
3. Against a correctly configured ticketd, in this process: the service
   (``create_app`` on the embedded store, as ``ticketd serve`` runs it) and two
   ``websockets`` servers with ``ticket_auth`` (audiences ``chat`` and ``news``)
   on the same store: exit 0.

Everything listens on loopback ports chosen by the OS and stops before returning.
Needs the ``audit`` extra (the service and websockets).
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from .catalog import CATALOG, CONTROLS, Status
from .report import EXIT_FAIL, EXIT_OK, EXIT_USAGE, Report
from .runner import run_audit
from .session import AuditConfig
from .weak import ALLOWED_ORIGIN, WEAKNESSES, WeakServer

__all__ = ["EXPECTED", "real_ticketd", "self_test", "weak_config"]

EXPECTED: dict[str, set[str]] = {
    "mint_any_origin": {
        "mint.origin.foreign",
        "mint.origin.null",
        "mint.origin.missing",
        "mint.origin.lookalike",
    },
    "prefix_origin": {"mint.origin.lookalike", "upgrade.origin.lookalike"},
    "reflect_cors": {"mint.origin.foreign", "mint.preflight"},
    "wildcard_cors": {"mint.cors.wildcard", "mint.preflight"},
    "no_fetch_metadata": {"mint.fetch_metadata"},
    "mint_get": {"mint.method"},
    "text_plain_mint": {"mint.content_type"},
    "mint_no_cookie": {"mint.cookie"},
    "missing_no_store": {"mint.response_headers"},
    "no_ticket_accepted": {"upgrade.no_ticket", "upgrade.cookie_only", "upgrade.cswsh"},
    "cookie_upgrade": {"upgrade.cookie_only", "upgrade.cswsh"},
    "accept_then_close": {"upgrade.no_ticket", "upgrade.origin.foreign", "upgrade.replay"},
    "no_origin_check_upgrade": {
        "upgrade.origin.foreign",
        "upgrade.origin.null",
        "upgrade.origin.missing",
        "upgrade.origin.lookalike",
    },
    "origin_before_consume": {"upgrade.origin.burns"},
    "reusable_tickets": {"upgrade.replay", "upgrade.parallel"},
    "distinguishable": {"upgrade.indistinguishable"},
    "get_consumes": {"upgrade.prefetch"},
    "subprotocol_echo": {"upgrade.subprotocol_echo"},
    "audience_ignored": {"upgrade.audience"},
    "weak_cookie": {"cookie.attributes"},
    "logout_keeps_socket": {"after.logout"},
    "no_replay_metric": {"after.replay_metric"},
    "plaintext": {"transport.plaintext", "transport.hsts"},
}


def weak_config(server: WeakServer, **overrides: Any) -> AuditConfig:
    """The audit of a :class:`WeakServer`, every optional check switched on."""
    values: dict[str, Any] = {
        "mint_url": f"{server.base}/v1/tickets",
        "socket_urls": [f"{server.socket_base}/ws", f"{server.socket_base}/ws2"],
        "audiences": ["chat", "news"],
        "origin": ALLOWED_ORIGIN,
        "login_url": f"{server.base}/login",
        "metrics_url": f"{server.base}/metrics",
        "logout_url": f"{server.base}/logout",
        "production": "plaintext" in server.weak,
        "delay": 0.0,
    }
    values.update(overrides)
    return AuditConfig(**values)


def _clean(report: Report) -> list[str]:
    """Results that are neither a pass nor a skip."""
    return [
        f"{r.id}={r.status.value} ({r.evidence})"
        for r in report.results
        if r.status not in (Status.PASS, Status.SKIPPED)
    ]


def self_test(out: TextIO, *, weaknesses: Iterable[str] = WEAKNESSES, ticketd: bool = True) -> int:
    """Run the self-test, writing one line per step to ``out``; 0 when proven.

    ``weaknesses`` and ``ticketd=False`` narrow it (the checks are then not all covered,
    which is itself reported as a failure).
    """
    try:
        real = real_ticketd()
    except ImportError as exc:
        out.write(f"ticketd audit --self-test needs the audit extra ({exc.name} is missing): ")
        out.write("pip install 'ticketd[audit]'\n")
        return EXIT_USAGE
    problems: list[str] = []
    with WeakServer() as server:
        report = run_audit(weak_config(server))
    bad = _clean(report)
    out.write(f"weak server, no weakness: exit {report.exit_code()} {' '.join(bad)}\n")
    if report.exit_code() != EXIT_OK:
        problems.append("the weak server without weaknesses did not pass")
    caught: set[str] = set()
    for name in weaknesses:
        description = WEAKNESSES[name]
        with WeakServer({name}) as server:
            report = run_audit(weak_config(server))
        flagged = report.flagged()
        caught |= flagged
        missed = EXPECTED[name] - flagged
        verdict = "ok" if not missed and report.exit_code() == EXIT_FAIL else "MISSED"
        out.write(f"{verdict:6} {name} ({description}): {', '.join(sorted(flagged))}\n")
        if verdict != "ok":
            problems.append(f"{name}: exit {report.exit_code()}, not flagged {sorted(missed)}")
    never = sorted({c.id for c in CATALOG} - CONTROLS - caught)
    if never:
        problems.append(f"checks no weakness made fail: {never}")
    if ticketd:
        with real as config:
            report = run_audit(config)
        code = report.exit_code()
        out.write(
            f"ticketd (service + websockets adapter): exit {code} {' '.join(_clean(report))}\n"
        )
        if code != EXIT_OK:
            problems.append("a correctly configured ticketd did not pass")
    else:
        problems.append("ticketd itself was not audited")
    for problem in problems:
        out.write(f"self-test failed: {problem}\n")
    if problems:
        return EXIT_FAIL
    checks = len(CATALOG) - len(CONTROLS)
    out.write(
        f"self-test passed: each of {checks} checks failed against at least one of "
        f"{len(WEAKNESSES)} weaknesses; all pass against ticketd\n"
    )
    return EXIT_OK


def _listener() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


def real_ticketd() -> Any:
    """A context manager running ticketd on loopback; yields the :class:`AuditConfig` for it.

    Raises ``ImportError`` (before starting anything) without the service or websockets.
    """
    import fakeredis
    import uvicorn
    from websockets.asyncio.server import ServerConnection, serve

    from .. import TicketStore, TicketVerifier
    from ..integrations.websockets import select_subprotocol, ticket_auth
    from ..service import create_app
    from ..service.settings import build_settings
    from ..sessions import issue_session_cookie

    @contextmanager
    def running() -> Iterator[AuditConfig]:
        secret = secrets.token_urlsafe(32)
        settings = build_settings(
            {
                "allowed_origins": ALLOWED_ORIGIN,
                "session_secret": secret,
                "audiences": "chat,news",
                "log_level": "warning",
            }
        )
        store = fakeredis.FakeAsyncRedis()
        http, chat, news = _listener(), _listener(), _listener()
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(settings, redis_client=store),
                log_config=None,
                lifespan="on",
                proxy_headers=False,
                server_header=False,
            )
        )
        stop = threading.Event()
        ready = threading.Event()

        async def handler(connection: ServerConnection) -> None:
            await connection.send("hello")
            await connection.wait_closed()

        async def main() -> None:
            verifier = TicketVerifier(TicketStore(store), key_prefix=settings.key_prefix)
            sockets = []
            for sock, audience in ((chat, "chat"), (news, "news")):
                sockets.append(
                    await serve(
                        handler,
                        sock=sock,
                        process_response=ticket_auth(verifier, audience=audience),
                        select_subprotocol=select_subprotocol,
                    )
                )
            task = asyncio.create_task(server.serve(sockets=[http]))
            while not server.started and not task.done():  # noqa: ASYNC110 - uvicorn has no event
                await asyncio.sleep(0.01)
            ready.set()
            while not stop.is_set() and not task.done():  # noqa: ASYNC110 - a thread's Event
                await asyncio.sleep(0.05)
            server.should_exit = True
            await task
            for ws in sockets:
                ws.close()
                await ws.wait_closed()

        thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
        thread.start()
        try:
            if not ready.wait(20) or not server.started:
                raise RuntimeError("ticketd did not start")
            cookie = issue_session_cookie(
                {settings.session_subject_key: "self-test"}, secret=secret
            )
            yield AuditConfig(
                mint_url=f"http://127.0.0.1:{http.getsockname()[1]}/v1/tickets",
                socket_urls=[
                    f"ws://127.0.0.1:{chat.getsockname()[1]}/",
                    f"ws://127.0.0.1:{news.getsockname()[1]}/",
                ],
                audiences=["chat", "news"],
                origin=ALLOWED_ORIGIN,
                cookie=f"{settings.session_cookie}={cookie}",
                delay=0.0,
            )
        finally:
            stop.set()
            thread.join(20)
            for sock in (http, chat, news):
                sock.close()

    return running()
