"""``ticketd audit``: the arguments, the safety rails, the exit codes.

Exit codes: 0 every check passed (or did not apply), 1 a failure at or above
``--fail-on``, 2 a usage or configuration error, 3 inconclusive (the target did
not answer, or a positive control failed). Imports only the standard library and
the ticketd core, so the command works without the ``server`` extra.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any
from urllib.parse import urlsplit

from .catalog import Severity
from .report import EXIT_USAGE, render
from .session import AuditConfig, is_loopback

__all__ = ["ACK_FLAG", "DESCRIPTION", "add_parser", "config_from", "main", "run"]

ACK_FLAG = "--i-am-authorized-to-test-this-target"
DESCRIPTION = (
    """\
Check a ticketd deployment from outside: mint CSRF/CORS, WebSocket upgrades
(CSWSH, Origin binding, replay), transport and cookie, and, with --metrics-url
and --logout-url, what happens after the handshake. Requests are sequential,
paced (--delay) and budgeted (--max-requests); tickets and cookies are never
printed. Targets outside loopback need """
    + ACK_FLAG
    + """.

exit codes: 0 all pass, 1 a failure at or above --fail-on, 2 usage error,
3 inconclusive (target unreachable or a positive control failed)"""
)


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Register ``audit`` on ``ticketd``'s subcommands (an ``argparse`` subparsers action)."""
    p: argparse.ArgumentParser = commands.add_parser(
        "audit",
        help="check a deployment from outside for CSWSH and ticket misuse",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--mint-url", help="the mint endpoint, e.g. https://app.example.com/v1/tickets")
    p.add_argument("--socket-url", action="append", default=[], help="a WebSocket URL (repeatable)")
    p.add_argument("--origin", help="an origin allowed to mint, e.g. https://app.example.com")
    p.add_argument("--cookie", help="the session cookie as NAME=VALUE (never printed)")
    p.add_argument(
        "--audience",
        action="append",
        default=[],
        help="the audience of each --socket-url, in the same order (repeatable)",
    )
    p.add_argument("--metrics-url", help="Prometheus metrics of the WebSocket tier")
    p.add_argument("--logout-url", help="the app's logout (POST with the cookie)")
    p.add_argument("--login-url", help="POST here to obtain the cookie and check its attributes")
    p.add_argument("--login-body", default="{}", help="JSON body for --login-url")
    p.add_argument("--cookie-name", default="session", help="cookie name set by --login-url")
    p.add_argument("--transport", choices=["subprotocol", "query"], default="subprotocol")
    p.add_argument("--format", choices=["text", "json", "sarif", "junit"], default="text")
    p.add_argument("--output", help="write the report here instead of stdout")
    p.add_argument("--fail-on", choices=[s.value for s in Severity if s.rank], default="low")
    p.add_argument("--max-requests", type=int, default=300, help="request budget (default 300)")
    p.add_argument("--delay", type=float, default=0.05, help="seconds between requests")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds per request")
    p.add_argument("--ca-file", help="PEM CA bundle to verify https/wss (default: system store)")
    p.add_argument(
        "--production",
        action="store_true",
        help="treat the target as production even on loopback (plaintext fails)",
    )
    p.add_argument(
        ACK_FLAG,
        dest="authorized",
        action="store_true",
        help="required for any target outside loopback: you may test it",
    )
    p.add_argument(
        "--self-test",
        action="store_true",
        help="prove every check can fail (against built-in weak servers), then that all pass "
        "against a correctly configured ticketd; needs the audit extra",
    )
    p.set_defaults(handler=run)
    return p


def _usage(message: str) -> int:
    print(f"ticketd audit: {message}", file=sys.stderr)
    return EXIT_USAGE


def config_from(args: argparse.Namespace) -> AuditConfig | str:
    """The run's configuration, or the usage error to print."""
    missing = [f for f in ("mint_url", "origin") if not getattr(args, f)]
    if missing or not args.socket_url:
        names = [f"--{m.replace('_', '-')}" for m in missing]
        return "missing " + ", ".join([*names, *([] if args.socket_url else ["--socket-url"])])
    if not args.cookie and not args.login_url:
        return "give --cookie NAME=VALUE or --login-url"
    if args.cookie and "=" not in args.cookie:
        return "--cookie must be NAME=VALUE"
    checks = [("--mint-url", args.mint_url, ("http", "https"))]
    checks += [("--socket-url", u, ("ws", "wss")) for u in args.socket_url]
    for flag, url in (("--metrics-url", args.metrics_url), ("--logout-url", args.logout_url)):
        if url:
            checks.append((flag, url, ("http", "https")))
    for flag, url, schemes in checks:
        if urlsplit(url).scheme not in schemes or not urlsplit(url).hostname:
            return f"{flag} must be a {' or '.join(s + '://' for s in schemes)} URL"
    origin = urlsplit(args.origin)
    if origin.scheme not in ("http", "https") or origin.path or not origin.hostname:
        return "--origin must be scheme://host[:port], e.g. https://app.example.com"
    if len(args.audience) > len(args.socket_url):
        return "more --audience than --socket-url (give one audience per socket, in order)"
    if args.login_body:
        try:
            json.loads(args.login_body)
        except ValueError:
            return "--login-body is not JSON"
    if args.ca_file and not os.path.isfile(args.ca_file):
        return f"--ca-file {args.ca_file}: no such file"
    if args.max_requests < 1 or args.delay < 0 or args.timeout <= 0:
        return "--max-requests must be >= 1, --delay >= 0, --timeout > 0"
    config = AuditConfig(
        mint_url=args.mint_url,
        socket_urls=list(args.socket_url),
        origin=args.origin,
        cookie=args.cookie,
        audiences=list(args.audience),
        metrics_url=args.metrics_url,
        logout_url=args.logout_url,
        login_url=args.login_url,
        login_body=args.login_body,
        cookie_name=args.cookie_name,
        transport=args.transport,
        production=args.production,
        max_requests=args.max_requests,
        delay=args.delay,
        timeout=args.timeout,
        ca_file=args.ca_file,
    )
    remote = sorted({urlsplit(u).hostname or "" for u in config.urls() if not is_loopback(u)})
    if remote and not args.authorized:
        return (
            f"{', '.join(remote)} {'is' if len(remote) == 1 else 'are'} outside loopback: "
            f"pass {ACK_FLAG} "
            "if you are allowed to test it"
        )
    return config


def run(args: argparse.Namespace) -> int:
    fail_on = Severity(args.fail_on)
    if args.self_test:
        from .selftest import self_test

        return self_test(out=sys.stdout)
    config = config_from(args)
    if isinstance(config, str):
        return _usage(config)
    from .runner import run_audit

    report = run_audit(config)
    text = render(report, args.format, fail_on)
    if args.output:
        try:
            with open(args.output, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as exc:
            return _usage(f"cannot write {args.output}: {exc.strerror}")
    else:
        sys.stdout.write(text)
    return report.exit_code(fail_on)


def main(argv: list[str] | None = None) -> int:
    """``python -m ticketd.audit``: the same command without the ``ticketd`` entry point."""
    parser = argparse.ArgumentParser(prog="ticketd")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["audit", *(sys.argv[1:] if argv is None else argv)])
    code: int = args.handler(args)
    return code
