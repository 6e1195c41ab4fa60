"""The ``ticketd`` command: ``serve``, ``check-config`` and ``revoke``."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .settings import Settings

__all__ = ["main"]

DEV_ORIGINS = "http://127.0.0.1:8080,http://localhost:8080"


def _dev_environment(host: str, port: int) -> None:
    """Fill in what ``make run`` needs on a fresh machine; never overrides the caller."""
    os.environ.setdefault(
        "TICKETD_ALLOWED_ORIGINS", f"http://127.0.0.1:{port},http://localhost:{port}"
    )
    if (
        "TICKETD_SESSION_SECRET" not in os.environ
        and "TICKETD_SESSION_SECRET_FILE" not in os.environ
    ):
        os.environ["TICKETD_SESSION_SECRET"] = secrets.token_urlsafe(32)
    os.environ.setdefault("TICKETD_LOG_FORMAT", "text")


def _dev_banner(settings: Settings, host: str, port: int) -> str:
    from ..sessions import issue_session_cookie

    # From the validated settings, not os.environ: the secret may come from
    # TICKETD_SESSION_SECRET_FILE, and the cookie name and subject key may be set.
    assert settings.session_secret is not None  # validated as required
    secret = settings.session_secret.get_secret_value()
    subject = {settings.session_subject_key: "dev-user"}
    cookie = f"{settings.session_cookie}={issue_session_cookie(subject, secret=secret)}"
    base = f"http://{host}:{port}"
    banner = "\nticketd development mode (embedded store, generated session secret)\n"
    if settings.session_format != "ticketd":
        return banner + f"  readiness: curl -s {base}/readyz\n"
    return banner + (
        f"  a session cookie for user 'dev-user':  {cookie}\n"
        "  mint a ticket:\n"
        f"    curl -si -X POST {base}/v1/tickets -H 'Origin: http://127.0.0.1:{port}' \\\n"
        f"         -H 'Cookie: {cookie}'\n"
        f"  readiness: curl -s {base}/readyz\n"
    )


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from . import create_app
    from .logconfig import configure_logging, logging_config
    from .server import DrainingServer
    from .settings import ConfigError, load_settings

    if args.dev:
        _dev_environment(args.host, args.port)
    try:
        settings = load_settings()
    except ConfigError as exc:
        for line in exc.problems:
            print(f"ticketd: configuration error: {line}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    if args.dev:
        print(_dev_banner(settings, args.host, args.port), file=sys.stderr, flush=True)
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
        )
        return 0
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_config=log_config,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=args.graceful_timeout,
    )
    DrainingServer(config, app.state.service, drain_seconds=args.drain_seconds).run()
    return 0


def app_from_environment() -> object:
    """Application factory for uvicorn workers (each worker reads the environment)."""
    from . import create_app
    from .settings import load_settings

    return create_app(load_settings())


def _check_config(args: argparse.Namespace) -> int:
    from .settings import ConfigError, load_settings

    try:
        settings = load_settings()
    except ConfigError as exc:
        for line in exc.problems:
            print(f"ticketd: configuration error: {line}", file=sys.stderr)
        return 2
    store = "embedded (in-process, development only)" if settings.embedded else "redis"
    print(
        f"configuration OK: store={store} origins={len(settings.allowed_origins)} "
        f"audiences={','.join(settings.audiences)}"
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


def main(argv: Sequence[str] | None = None) -> int:
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
        "--dev",
        action="store_true",
        help="development defaults: local origins, generated secret, text logs",
    )
    serve.set_defaults(handler=_serve)
    check = commands.add_parser("check-config", help="validate TICKETD_* and exit")
    check.set_defaults(handler=_check_config)
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
    args = parser.parse_args(argv)
    try:
        from . import create_app  # noqa: F401  - fail early with the install hint
    except ImportError as exc:
        print(f"ticketd: {exc}", file=sys.stderr)
        return 2
    code: int = args.handler(args)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
