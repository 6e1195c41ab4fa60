"""Instructions per request under callgrind: a figure other work on the machine cannot move.

``python -m bench.instructions [VARIANT ...] [--count N]`` runs each variant in a
child process under ``valgrind --tool=callgrind`` (64 concurrent callers, uvloop, a
real ``redis-server``): after start-up and a warm-up, ``N`` requests run inside
``operator.call``, and callgrind counts only what runs there
(``--toggle-collect=_operator_call``, a C function nothing else calls), so
start-up, imports and bytecode compilation are not counted. The figure is
instructions per request in the Python process. Redis runs outside valgrind, so
its work is not counted; the HTTP server (uvicorn, httptools) is not part of it
either (the ASGI apps are called directly, as in :mod:`bench.cpu`).

Variants: the four mint apps of :mod:`bench.apps` (``bare``, ``naive``,
``ticketd_app``, ``ticketd_app_without_limits``), ``http_redeem`` (the service's
``POST /v1/tickets/redeem``), ``verifier`` (:class:`~ticketd.TicketVerifier`
``redeem``) and ``raw_getdel`` (redis-py ``GETDEL``). Ratios of ``1 / instructions``
compare like the throughput ratios of ``make bench``, without the server's share.
"""

from __future__ import annotations

import argparse
import asyncio
import operator
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

MINT_VARIANTS = ("bare", "naive", "ticketd_app", "ticketd_app_without_limits")
REDEEM_VARIANTS = ("http_redeem", "verifier", "raw_getdel")
VARIANTS = MINT_VARIANTS + REDEEM_VARIANTS
CONCURRENCY = 64
WARM_UP = 3 * CONCURRENCY
SLOW_DEADLINE = 30.0
"""Store deadline and socket timeout under valgrind, which runs Python some 50x slower."""


async def _asgi_call(
    app: Any, scope: dict[str, Any], body: bytes, statuses: dict[int, int]
) -> None:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses[message["status"]] = statuses.get(message["status"], 0) + 1

    await app(dict(scope), receive, send)


async def _operation(variant: str, tickets: list[str]) -> tuple[Any, Any]:
    """``(call(i), close)`` for one variant; ``call(i)`` does request ``i``."""
    from . import apps

    statuses: dict[int, int] = {}
    if variant in MINT_VARIANTS:
        from ticketd.sessions import issue_session_cookie

        app = getattr(apps, variant)()
        cookie = issue_session_cookie({"user_id": 12345}, secret=apps.SECRET)
        scope = apps.post_scope(
            "/v1/tickets",
            [
                (b"host", b"127.0.0.1"),
                (b"origin", apps.ORIGIN.encode()),
                (b"cookie", f"session={cookie}".encode()),
                (b"content-length", b"0"),
            ],
        )

        async def mint(i: int) -> None:
            await _asgi_call(app, scope, b"", statuses)

        return mint, statuses
    if variant == "http_redeem":
        app = apps.ticketd_app()
        headers = [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"authorization", f"Bearer {apps.SECRET}".encode()),
        ]

        async def http_redeem(i: int) -> None:
            body = f'{{"ticket":"{tickets[i]}","origin":"{apps.ORIGIN}"}}'.encode()
            length = [(b"content-length", str(len(body)).encode())]
            scope = apps.post_scope("/v1/tickets/redeem", headers + length)
            await _asgi_call(app, scope, body, statuses)

        return http_redeem, statuses
    from ticketd import RedisOptions, TicketStore, TicketVerifier
    from ticketd.connection import async_client

    url = os.environ["BENCH_REDIS_URL"]
    if variant == "verifier":
        options = RedisOptions(url=url, socket_timeout=SLOW_DEADLINE)
        store = TicketStore(async_client(options), deadline=SLOW_DEADLINE)
        verifier = TicketVerifier(store)

        async def redeem(i: int) -> None:
            await verifier.redeem(tickets[i], origin=apps.ORIGIN)
            statuses[200] = statuses.get(200, 0) + 1

        return redeem, statuses
    import redis.asyncio

    from ticketd.tickets import ticket_key

    client = redis.asyncio.Redis.from_url(
        url, max_connections=CONCURRENCY, socket_timeout=SLOW_DEADLINE
    )
    keys = [ticket_key("ticketd:", t) for t in tickets]

    async def getdel(i: int) -> None:
        if await client.getdel(keys[i]) is not None:
            statuses[200] = statuses.get(200, 0) + 1

    return getdel, statuses


async def _run(call: Any, statuses: dict[int, int], start: int, end: int) -> None:
    """Requests ``start`` to ``end - 1``, ``CONCURRENCY`` at a time; all must succeed."""
    position = start

    async def worker() -> None:
        nonlocal position
        while position < end:
            i = position
            position += 1
            await call(i)

    statuses.clear()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    ok = sum(n for status, n in statuses.items() if status < 300)
    if ok != end - start:
        raise SystemExit(f"{ok} of {end - start} requests succeeded: {statuses}")


def _child(variant: str, count: int, tickets: list[str]) -> None:
    import uvloop

    loop = uvloop.new_event_loop()
    call, statuses = loop.run_until_complete(_operation(variant, tickets))
    loop.run_until_complete(_run(call, statuses, 0, WARM_UP))
    # Only what runs inside operator.call is counted (--toggle-collect=_operator_call).
    operator.call(loop.run_until_complete, _run(call, statuses, WARM_UP, WARM_UP + count))


_COLLECTED = re.compile(r"Collected : (\d+)")


def _child_command(variant: str, count: int, tickets_file: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bench.instructions",
        "--child",
        variant,
        "--count",
        str(count),
        "--tickets",
        tickets_file,
    ]


def _instructions(variant: str, count: int, url: str, tickets_file: str) -> int:
    command = [
        shutil.which("valgrind") or "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        "--collect-atstart=no",
        "--toggle-collect=_operator_call",
        *_child_command(variant, count, tickets_file),
    ]
    env = {
        **os.environ,
        "BENCH_REDIS_URL": url,
        "BENCH_STORE_DEADLINE": str(SLOW_DEADLINE),
        "PYTHONHASHSEED": "0",
    }
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    found = _COLLECTED.findall(done.stderr)
    if done.returncode != 0 or not found:
        raise RuntimeError(f"{variant}: callgrind run failed:\n{done.stderr[-2000:]}")
    return int(found[-1])


def per_request(variant: str, count: int, url: str) -> float:
    """Instructions per request of ``variant`` (callgrind, the measured phase only)."""
    from .inproc import seed_tickets

    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as handle:
        needed = WARM_UP + count if variant in REDEEM_VARIANTS else 0
        handle.write("\n".join(seed_tickets(url, needed) if needed else []))
    try:
        return _instructions(variant, count, url, handle.name) / count
    finally:
        os.unlink(handle.name)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions")
    parser.add_argument("variants", nargs="*", default=list(VARIANTS), help=", ".join(VARIANTS))
    parser.add_argument("--count", type=int, default=640, help="requests measured")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--tickets", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        text = Path(args.tickets).read_text() if args.tickets else ""
        _child(args.child, args.count, text.split("\n") if text else [])
        return 0
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants: {sorted(unknown)}")
    from .procs import redis_server

    figures: dict[str, float] = {}
    with redis_server() as url:
        for variant in args.variants:
            figures[variant] = per_request(variant, args.count, url)
            print(f"{variant:28} {figures[variant]:>12,.0f} instructions/request", flush=True)
    for name, a, b in (
        ("mint / naive", "ticketd_app", "naive"),
        ("mint / bare", "ticketd_app", "bare"),
        ("limits on / limits off", "ticketd_app", "ticketd_app_without_limits"),
        ("verifier / raw GETDEL", "verifier", "raw_getdel"),
        ("HTTP redeem / bare", "http_redeem", "bare"),
    ):
        if a in figures and b in figures:
            print(f"{name:28} {figures[b] / figures[a]:>12.2f}x (1 / instructions)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
