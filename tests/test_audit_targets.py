"""``ticketd audit`` against real deployments: two that must pass, three that must be flagged.

- the demo (``python -m ticketd.demo``'s app) and a Redis-backed ``ticketd serve``
  (a subprocess) with two ``websockets`` servers behind ``ticket_auth``: exit 0, every
  check passes or does not apply; the text report is printed into the test log;
- the classic vulnerable Node ``ws`` server (tests/fixtures/vulnerable-ws: any upgrade,
  cookie trusted, no Origin check), a socket whose Origin check is a prefix match, and
  one whose store reads tickets without deleting them: exit 1 with the right check ids.

The vulnerable sockets are built from ticketd's own parts with one classic mistake each,
so the flags prove the audit sees the mistake, not a difference in framework.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, start_http_server
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from tests.support.processes import wait_until_answering
from tests.support.redisproc import free_port
from tests.support.servers import serve_app
from tests.support.service_support import (
    APP_ORIGIN,
    SECRET,
    cookie_for,
    make_settings,
    running_service,
)
from ticketd import TicketStore, TicketVerifier
from ticketd.audit import AuditConfig, Status, render, run_audit
from ticketd.audit.catalog import CATALOG, CONTROLS
from ticketd.audit.cli import add_parser, config_from
from ticketd.demo import build_demo
from ticketd.integrations.websockets import select_subprotocol, ticket_auth
from ticketd.redemption_metrics import PrometheusRedemptionObserver

FIXTURE = Path(__file__).parent / "fixtures" / "vulnerable-ws"
UPGRADE_FLAGS = {
    "upgrade.no_ticket",
    "upgrade.cookie_only",
    "upgrade.cswsh",
    "upgrade.origin.foreign",
    "upgrade.origin.null",
    "upgrade.origin.missing",
    "upgrade.origin.lookalike",
    "upgrade.replay",
    "upgrade.parallel",
}


def audit(*args: str) -> tuple[int, dict[str, Any], str]:
    """One run of ``ticketd audit ARGS`` (parsed by the command's own parser).

    Returns the exit code, the JSON report and the text report of that one run (a
    second run could meet the mint's rate limits), and prints the text into the log.
    """
    parser = argparse.ArgumentParser(prog="ticketd")
    add_parser(parser.add_subparsers(dest="command"))
    config = config_from(parser.parse_args(["audit", "--delay", "0", *args]))
    assert isinstance(config, AuditConfig), config
    report = run_audit(config)
    text = render(report, "text")
    print(f"\n{text}")
    return report.exit_code(), json.loads(render(report, "json")), text


def statuses(report: dict[str, Any]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for r in report["results"]:
        found.setdefault(r["id"], set()).add(r["status"])
    return found


def flagged(report: dict[str, Any]) -> set[str]:
    return {r["id"] for r in report["results"] if r["status"] in ("fail", "warn")}


def assert_all_pass(code: int, report: dict[str, Any], *, may_skip: set[str]) -> None:
    bad = [r for r in report["results"] if r["status"] not in ("pass", "skipped")]
    assert (code, bad) == (0, [])
    skipped = {r["id"] for r in report["results"] if r["status"] == "skipped"}
    assert skipped <= may_skip
    # Every non-skipped check really ran and passed: none silently missing.
    assert {c.id for c in CATALOG} - skipped <= {
        r["id"] for r in report["results"] if r["status"] == "pass"
    }


@contextmanager
def sockets(
    hooks: list[Callable[[ServerConnection, Request, Response | None], Any]],
    verifiers: list[TicketVerifier],
) -> Iterator[list[str]]:
    """websockets servers on loopback, one per ``process_response`` hook; yields their URLs.

    The ``verifiers`` are used (and closed) on the servers' event loop only.
    """
    loop = asyncio.new_event_loop()
    servers: list[Any] = []

    async def handler(connection: ServerConnection) -> None:
        await connection.send("hello")
        await connection.wait_closed()

    async def start() -> None:
        for hook in hooks:
            servers.append(
                await serve(
                    handler,
                    "127.0.0.1",
                    0,
                    process_response=hook,
                    select_subprotocol=select_subprotocol,
                )
            )

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    try:
        yield [f"ws://127.0.0.1:{s.sockets[0].getsockname()[1]}/" for s in servers]
    finally:

        async def stop() -> None:
            for s in servers:
                s.close()
                await s.wait_closed()
            for verifier in verifiers:
                await verifier.aclose()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def target_args(mint_base: str, socket_urls: list[str], subject: str, *audiences: str) -> list[str]:
    args = ["--mint-url", f"{mint_base}/v1/tickets", "--origin", APP_ORIGIN]
    args += ["--cookie", f"session={cookie_for(subject)}"]
    for url in socket_urls:
        args += ["--socket-url", url]
    for audience in audiences:
        args += ["--audience", audience]
    return args


# -- all pass ---------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["subprotocol", "query"])
def test_demo_passes(transport: str) -> None:
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    with serve_app(build_demo("127.0.0.1", port), port=port) as base:
        args = ["--mint-url", f"{base}/v1/tickets", "--socket-url", f"ws://127.0.0.1:{port}/ws"]
        args += ["--origin", origin, "--audience", "chat", "--login-url", f"{base}/demo/login"]
        args += ["--transport", transport, "--login-body", '{"name": "auditor"}']
        code, report, text = audit(*args)
    assert_all_pass(
        code,
        report,
        may_skip={
            "upgrade.audience",  # the demo serves one audience
            "transport.plaintext",
            "transport.hsts",
            "after.replay_metric",
            "after.logout",
        },
    )
    assert statuses(report)["cookie.attributes"] == {"pass"}  # observed at /demo/login
    assert "PASS upgrade.cswsh" in text


@contextmanager
def ticketd_serve(redis_url: str) -> Iterator[str]:
    """``ticketd serve`` in a subprocess on the real redis-server."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKETD_")}
    env.update(
        TICKETD_REDIS_URL=redis_url,
        TICKETD_ALLOWED_ORIGINS=APP_ORIGIN,
        TICKETD_SESSION_SECRET=SECRET,
        TICKETD_AUDIENCES="chat,billing",
        TICKETD_LOG_LEVEL="warning",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "ticketd.service.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(
            process,
            f"{base}/readyz",
            diagnostics=lambda: process.stderr.read().decode() if process.stderr else "",
        )
        yield base
    finally:
        process.terminate()
        process.wait(20)
        if process.stderr:
            process.stderr.close()


@pytest.mark.redis
def test_redis_backed_ticketd_serve_and_adapter_pass(redis_url: str) -> None:
    # The WebSocket tier counts its redeems (replays apart) and exports them, as a
    # deployment would on its own /metrics: the replay check reads them there.
    registry = CollectorRegistry()
    observers = [PrometheusRedemptionObserver(registry)]
    metrics_server, _ = start_http_server(0, addr="127.0.0.1", registry=registry)
    ws_metrics = f"http://127.0.0.1:{metrics_server.server_port}/metrics"
    chat = TicketVerifier.from_url(redis_url, audience="chat", observers=observers)
    billing = TicketVerifier.from_url(redis_url, audience="billing", observers=observers)
    hooks = [ticket_auth(chat), ticket_auth(billing)]
    with ticketd_serve(redis_url) as base, sockets(hooks, [chat, billing]) as urls:
        args = target_args(base, urls, "auditor-1", "chat", "billing")
        code, report, _ = audit(*args)
        assert_all_pass(
            code,
            report,
            may_skip={
                "transport.plaintext",
                "transport.hsts",
                "cookie.attributes",
                "after.replay_metric",
                "after.logout",
            },
        )
        # Both sockets were audited, not only the first.
        targets = {r["target"] for r in report["results"] if r["id"] == "upgrade.cswsh"}
        assert targets == set(urls)
        # After the handshake: the WebSocket tier's metrics count the audit's replay
        # (outcome="replayed"); revocation on logout is not in this ticketd (no logout
        # endpoint): inconclusive (exit 3), never pass.
        extra = ["--metrics-url", ws_metrics, "--logout-url", f"{base}/v1/logout"]
        code, report, _ = audit(*target_args(base, urls, "auditor-2", "chat", "billing"), *extra)
        # The control: the service's own metrics never saw that replay (the WS tier's).
        service_only = ["--metrics-url", f"{base}/metrics"]
        _, control, _ = audit(
            *target_args(base, urls, "auditor-3", "chat", "billing"), *service_only
        )
    metrics_server.shutdown()
    metrics_server.server_close()
    found = statuses(report)
    assert (code, found["after.replay_metric"], found["after.logout"]) == (
        3,
        {"pass"},
        {"inconclusive"},
    )
    assert statuses(control)["after.replay_metric"] == {"inconclusive"}
    assert not flagged(report)


# -- vulnerable servers -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vulnerable_ws() -> Iterator[str]:
    """The Node ``ws`` server of tests/fixtures/vulnerable-ws (``npm ci`` on first use)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip(
            "node and npm are needed for the vulnerable ws server (apt-get install nodejs npm)"
        )
    if not (FIXTURE / "node_modules" / "ws" / "package.json").exists():
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
            cwd=FIXTURE,
            check=True,
            capture_output=True,
            timeout=300,
        )
    process = subprocess.Popen(
        [node, "server.js"],
        cwd=FIXTURE,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = json.loads(process.stdout.readline())["port"]
        yield f"ws://127.0.0.1:{port}/"
    finally:
        if process.stdin:
            process.stdin.close()
        process.wait(10)
        if process.stdout:
            process.stdout.close()


@pytest.fixture(scope="module")
def embedded_mint() -> Iterator[str]:
    """A correct ticketd mint (embedded store): only the socket under test is wrong."""
    with running_service(make_settings(None)) as base:
        yield base


def test_node_ws_accepting_any_upgrade_is_flagged(vulnerable_ws: str, embedded_mint: str) -> None:
    code, report, _ = audit(*target_args(embedded_mint, [vulnerable_ws], "victim", "chat"))
    assert code == 1
    assert flagged(report) >= UPGRADE_FLAGS
    assert not {i for i in flagged(report) if i.startswith("mint.")}  # the mint is ticketd's
    # The checks that need the socket to refuse a replay first are inconclusive, not passed.
    assert statuses(report)["upgrade.indistinguishable"] == {"inconclusive"}


def test_prefix_match_origin_check_is_flagged(redis_url: str) -> None:
    verifier = TicketVerifier.from_url(redis_url, audience="chat")
    redeem = ticket_auth(verifier)

    async def prefix_checked(
        connection: ServerConnection, request: Request, response: Response | None = None
    ) -> Response | None:
        # The mistake: a startswith() check, then the redeem trusts it with the allowed origin.
        origin = request.headers.get("Origin") or ""
        if not origin.startswith(APP_ORIGIN):
            return connection.respond(403, "forbidden\n")
        del request.headers["Origin"]
        request.headers["Origin"] = APP_ORIGIN
        return await redeem(connection, request, response)

    with (
        running_service(make_settings(redis_url)) as base,
        sockets([prefix_checked], [verifier]) as urls,
    ):
        code, report, _ = audit(*target_args(base, urls, "victim-2", "chat"))
    assert code == 1
    # The prefix check refuses a plainly foreign Origin before the redeem: not burned either.
    assert flagged(report) == {"upgrade.origin.lookalike", "upgrade.origin.burns"}


class ReadOnlyStore(TicketStore):
    """The mistake: GET instead of the take (the tombstone was "an optimisation for later")."""

    async def take(self, key: str, tombstone: bytes | None = None) -> bytes | None:
        value = await self.client.execute_command("GET", key)
        return value if isinstance(value, bytes) else None

    async def settle(self, key: str, tombstone: bytes) -> bool:
        return True  # nor any other write: the record stays


def test_reusable_tickets_are_flagged(redis_url: str) -> None:
    import redis.asyncio

    store = ReadOnlyStore(redis.asyncio.Redis.from_url(redis_url), batch=False)
    verifier = TicketVerifier(store, audience="chat")
    hook = ticket_auth(verifier)
    with running_service(make_settings(redis_url)) as base, sockets([hook], [verifier]) as urls:
        code, report, _ = audit(*target_args(base, urls, "victim-3", "chat"))
    assert code == 1
    assert flagged(report) == {"upgrade.replay", "upgrade.parallel", "upgrade.origin.burns"}


def test_every_check_has_a_catalog_entry() -> None:
    ids = [c.id for c in CATALOG]
    assert len(ids) == len(set(ids))
    assert {"control.mint", "control.upgrade"} == set(CONTROLS)
    assert Status.INCONCLUSIVE.value == "inconclusive"
