"""The ``ticketd`` command: ``serve``, ``check-config``, ``demo``, ``revoke`` and ``audit``."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import tempfile
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..audit.cli import add_parser as add_audit_parser

if TYPE_CHECKING:
    from .settings import Settings

__all__ = ["DEV_ORIGINS", "add_demo_arguments", "app_from_environment", "build_parser", "main"]

DEV_ORIGINS = "http://127.0.0.1:8080,http://localhost:8080"  # what --dev allows on port 8080
_INTERRUPTED = 130  # the shell's code for "stopped by Ctrl+C" (128 + SIGINT)
_HOW_TO_GENERATE = (
    "generate one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))' "
    "(or run `ticketd serve --dev` for local development)"
)
_ORIGIN_HINT = "an origin is scheme://host[:port], e.g. https://app.example.com"


def _dev_environment(host: str, port: int) -> dict[str, str]:
    """Fill in what ``make run`` needs on a fresh machine; never overrides the caller.

    Returns where the session secret and the service key came from, for the banner.
    """
    os.environ.setdefault(
        "TICKETD_ALLOWED_ORIGINS", f"http://127.0.0.1:{port},http://localhost:{port}"
    )
    sources = {}
    for name, what in (("SESSION_SECRET", "secret"), ("SERVICE_KEYS", "service_key")):
        variable = f"TICKETD_{name}"
        if variable in os.environ:
            sources[what] = f"from {variable}"
        elif f"{variable}_FILE" in os.environ:
            sources[what] = f"from {variable}_FILE"
        else:
            os.environ[variable] = secrets.token_urlsafe(32)
            sources[what] = "generated at start-up"
    os.environ.setdefault("TICKETD_LOG_FORMAT", "text")
    return sources


def _first_exact_origin(settings: Settings) -> str | None:
    """The first allowed origin a curl can send (wildcard patterns cannot be sent)."""
    return next((o for o in settings.allowed_origins if "*" not in o), None)


def _dev_banner(
    settings: Settings,
    host: str,
    port: int,
    *,
    provenance: Mapping[str, str] | None = None,
) -> str:
    """What `ticketd serve --dev` prints once it serves; ``provenance`` says where the
    session secret (``"secret"``) and the service key (``"service_key"``) came from."""
    provenance = provenance or {}
    from ..sessions import issue_session_cookie
    from .diagnostics import redis_target

    base = f"http://{'127.0.0.1' if host in ('', '0.0.0.0', '::') else host}:{port}"  # noqa: S104
    if settings.embedded:
        store = (
            "EMBEDDED in-process store: tickets live in this process only, so a separate "
            "WebSocket server cannot redeem them\n"
            "           (share a Redis: TICKETD_REDIS_URL=redis://127.0.0.1:6379/0 make run)"
        )
    else:
        store = f"Redis at {redis_target(settings)}"
    origin = _first_exact_origin(settings)
    lines = [
        "",
        "ticketd development mode",
        f"  store:   {store}",
        f"  session secret: {provenance.get('secret', 'configured')}",
        f"  allowed origins: {', '.join(settings.allowed_origins)}",
    ]
    if settings.session_format != "ticketd" or origin is None:
        why = "no exact allowed origin" if origin is None else "the app signs the cookies"
        return "\n".join([*lines, f"  readiness: curl -s {base}/readyz  ({why})", ""])
    # From the validated settings, not os.environ: the secret may come from
    # TICKETD_SESSION_SECRET_FILE, and the cookie name and subject key may be set.
    assert settings.session_secret is not None  # validated as required
    secret = settings.session_secret.get_secret_value()
    subject = {settings.session_subject_key: "dev-user"}
    cookie = f"{settings.session_cookie}={issue_session_cookie(subject, secret=secret)}"
    lines += [
        f"  a session cookie for user 'dev-user':  {cookie}",
        "  mint a ticket:",
        f"    curl -si -X POST {base}/v1/tickets -H 'Origin: {origin}' \\",
        f"         -H 'Cookie: {cookie}'",
    ]
    if settings.service_keys:
        key = settings.service_keys[0].get_secret_value()
        audience = settings.audiences[0]
        lines += [
            "  redeem it as a WebSocket server would (service key "
            f"{provenance.get('service_key', 'configured')}):",
            f"    T=$(curl -s -X POST {base}/v1/tickets -H 'Origin: {origin}' \\",
            f"         -H 'Cookie: {cookie}' \\",
            "         | python3 -c 'import json, sys; print(json.load(sys.stdin)[\"ticket\"])')",
            f"    curl -s -X POST {base}/v1/tickets/redeem -H 'Authorization: Bearer {key}' \\",
            "         -H 'Content-Type: application/json' \\",
            f'         -d \'{{"ticket": "\'$T\'", "origin": "{origin}", '
            f'"audience": "{audience}"}}\'',
            "  run that last curl again: the replay is refused (401, code invalid)",
        ]
    lines += [f"  readiness: curl -s {base}/readyz", ""]
    return "\n".join(lines)


def _fix_for(problem: str) -> str:
    """How to fix a configuration problem, when there is one known fix."""
    if problem.startswith(("TICKETD_SESSION_SECRET", "TICKETD_SERVICE_KEYS")) and any(
        word in problem for word in ("required", "bytes", "placeholder", "distinct")
    ):
        return _HOW_TO_GENERATE
    if problem.startswith("TICKETD_ALLOWED_ORIGINS"):
        return f"{_ORIGIN_HINT}, comma-separated"
    return ""


def _print_config_errors(problems: Sequence[str]) -> None:
    """One line per problem, ending with how to fix it when there is a known fix."""
    for line in problems:
        fix = _fix_for(line)
        print(
            f"ticketd: configuration error: {line}{f'; fix: {fix}' if fix else ''}",
            file=sys.stderr,
        )


def _started_hook(
    settings: Settings, service: Any, banner: str | None
) -> Callable[[], Awaitable[None]]:
    async def started() -> None:
        from .diagnostics import warn_if_unreachable

        # After uvicorn has bound the port: a banner is a promise that the curl works.
        await warn_if_unreachable(service.store, settings)
        if banner is not None:
            print(banner, file=sys.stderr, flush=True)

    return started


def _server(config: Any, service: Any, drain_seconds: float, started: Any) -> Any:
    from .server import DrainingServer

    class AnnouncingServer(DrainingServer):
        """Runs ``started`` once the socket is bound (uvicorn exits before that on failure)."""

        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started:
                await started()

    return AnnouncingServer(config, service, drain_seconds=drain_seconds)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from . import create_app
    from .logconfig import configure_logging, logging_config
    from .server import bounded_http_protocol, configure_header_limits
    from .settings import ConfigError, load_settings

    sources = _dev_environment(args.host, args.port) if args.dev else {}
    try:
        settings = load_settings()
    except ConfigError as exc:
        _print_config_errors(exc.problems)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    configure_header_limits(
        max_header_bytes=settings.max_header_bytes, header_timeout=settings.header_timeout
    )
    http = bounded_http_protocol(args.http)
    log_config = logging_config(settings.log_level, settings.log_format)
    if args.workers > 1:
        if settings.embedded:
            print(
                "ticketd: configuration error: --workers > 1 needs TICKETD_REDIS_URL "
                "(the embedded store lives in one process)",
                file=sys.stderr,
            )
            return 2
        os.environ.setdefault(
            "PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="ticketd-metrics-")
        )
        try:
            uvicorn.run(
                "ticketd.service.cli:app_from_environment",
                factory=True,
                host=args.host,
                port=args.port,
                workers=args.workers,
                timeout_graceful_shutdown=args.graceful_timeout,
                log_config=log_config,
                proxy_headers=False,
                server_header=False,
                http=http,
            )
        except KeyboardInterrupt:
            return _INTERRUPTED
        return 0
    app = create_app(settings)
    banner = (
        _dev_banner(
            settings,
            args.host,
            args.port,
            provenance=sources,
        )
        if args.dev
        else None
    )
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_config=log_config,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=args.graceful_timeout,
        http=http,
    )
    started = _started_hook(settings, app.state.service, banner)
    try:
        _server(config, app.state.service, args.drain_seconds, started).run()
    except KeyboardInterrupt:  # uvicorn shut down cleanly, then re-raised SIGINT
        return _INTERRUPTED
    return 0


def app_from_environment() -> object:
    """Application factory for uvicorn workers (each worker reads the environment)."""
    from . import create_app
    from .server import configure_header_limits
    from .settings import load_settings

    settings = load_settings()
    configure_header_limits(
        max_header_bytes=settings.max_header_bytes, header_timeout=settings.header_timeout
    )
    return create_app(settings)


def _check_config(args: argparse.Namespace) -> int:
    from .settings import ConfigError, load_settings

    try:
        settings = load_settings()
    except ConfigError as exc:
        _print_config_errors(exc.problems)
        return 2
    store = "embedded (in-process, development only)" if settings.embedded else "redis"
    print(
        f"configuration OK: store={store} origins={len(settings.allowed_origins)} "
        f"audiences={','.join(settings.audiences)}"
    )
    if not args.connect or settings.embedded:
        return 0
    return asyncio.run(_connect(settings))


async def _connect(settings: Settings) -> int:
    from ..connection import async_client
    from ..store import TicketStore
    from .diagnostics import check_redeem_command, check_store, redis_target
    from .runtime import redis_options

    store = TicketStore(async_client(redis_options(settings)), deadline=settings.store_deadline)
    try:
        problem = await check_store(store, settings)
        unsupported = await check_redeem_command(store, settings) if problem is None else None
    finally:
        await store.aclose()
    if problem is not None:
        print(
            f"ticketd: cannot connect to Redis at {redis_target(settings)}: {problem}",
            file=sys.stderr,
        )
        return 1
    if unsupported is not None:
        print(f"ticketd: Redis at {redis_target(settings)}: {unsupported}", file=sys.stderr)
        return 1
    print(
        f"connection OK: Redis at {redis_target(settings)} answered PING "
        "and runs the redeem command (SET ... XX GET KEEPTTL)"
    )
    return 0


def _revoke(args: argparse.Namespace) -> int:
    """``ticketd revoke SUBJECT``: the same revocation as ``POST /v1/revocations``."""
    from ..connection import sync_client
    from ..exceptions import StoreUnavailable
    from ..revoker import BlockingRevoker
    from .runtime import redis_options
    from .settings import ConfigError, load_settings

    try:
        settings = load_settings()
    except ConfigError as exc:
        for line in exc.problems:
            print(f"ticketd: configuration error: {line}", file=sys.stderr)
        return 2
    if settings.embedded:
        print("ticketd: revoke needs TICKETD_REDIS_URL (the shared store)", file=sys.stderr)
        return 2
    subject: str | int = args.subject
    if args.integer:
        try:
            subject = int(args.subject)
        except ValueError:
            print("ticketd: --integer: the subject is not an integer", file=sys.stderr)
            return 2
    client = sync_client(redis_options(settings))
    try:
        revoker = BlockingRevoker(
            client, key_prefix=settings.key_prefix, ttl=settings.session_max_age
        )
        revocation = revoker.revoke(
            subject,
            session=args.session,
            except_session=args.except_session,
            connection=args.connection,
            reason=args.reason,
        )
    except (ValueError, TypeError) as exc:
        print(f"ticketd: revoke: {exc}", file=sys.stderr)
        return 2
    except StoreUnavailable as exc:
        print(
            f"ticketd: revoke: store unavailable ({exc}); nothing is certain, retry",
            file=sys.stderr,
        )
        return 1
    finally:
        client.close()
    print(f"revoked kind={revocation.kind} at={revocation.at_ms / 1000:.3f}")
    return 0


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``ticketd demo`` (also ``python -m ticketd.demo``)."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--mint-url",
        default=None,
        help="mint at this ticketd (e.g. http://localhost:8080/v1/tickets) with the "
        "TICKETD_* settings of the environment; default: an embedded ticketd on the same port",
    )
    parser.add_argument(
        "--dev",
        action="store_true",
        help="show each refusal's reason on the page (development only)",
    )
    parser.add_argument(
        "--ttl", type=float, default=10.0, help="ticket lifetime of the embedded ticketd, seconds"
    )


def _demo(args: argparse.Namespace) -> int:
    from ..demo import run

    return run(args)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line (tests check Compose and Dockerfile commands against it)."""
    parser = argparse.ArgumentParser(prog="ticketd", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument(
        "--drain-seconds",
        type=float,
        default=0.0,
        help="on SIGTERM, answer /readyz with 503 for this long before shutting down "
        "(single-worker mode)",
    )
    serve.add_argument(
        "--graceful-timeout",
        type=float,
        default=20.0,
        help="seconds to let in-flight requests finish at shutdown",
    )
    serve.add_argument(
        "--http",
        choices=("auto", "h11", "httptools"),
        default="auto",
        help="HTTP parser (both bound request headers: TICKETD_MAX_HEADER_BYTES, "
        "TICKETD_HEADER_TIMEOUT)",
    )
    serve.add_argument(
        "--dev",
        action="store_true",
        help="development defaults: local origins, generated secret and service key "
        "(enables the redeem endpoint), text logs",
    )
    serve.set_defaults(handler=_serve)
    check = commands.add_parser("check-config", help="validate TICKETD_* and exit")
    check.add_argument("--connect", action="store_true", help="also connect to Redis and PING it")
    check.set_defaults(handler=_check_config)
    demo = commands.add_parser("demo", help="serve the demo page (development only)")
    add_demo_arguments(demo)
    demo.set_defaults(handler=_demo)
    revoke = commands.add_parser(
        "revoke", help="revoke a subject, session or connection (closes live sockets: 4403)"
    )
    revoke.add_argument("subject", help="the user; every session unless narrowed")
    revoke.add_argument("--integer", action="store_true", help="the subject is an integer")
    narrow = revoke.add_mutually_exclusive_group()
    narrow.add_argument("--session", help="revoke only this session")
    narrow.add_argument("--connection", help="revoke only this live connection (its id)")
    narrow.add_argument("--except-session", help="revoke every session but this one")
    revoke.add_argument("--reason", help="free text for the logs")
    revoke.set_defaults(handler=_revoke)
    add_audit_parser(commands)  # stdlib + core only: works without the server extra
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command != "audit":
            from . import create_app  # noqa: F401  - fail early with the install hint
    except ImportError as exc:
        print(f"ticketd: {exc}", file=sys.stderr)
        return 2
    code: int = args.handler(args)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
