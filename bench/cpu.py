"""CPU time per mint request, in-process over ASGI: the same apps, without wrk or uvicorn.

On a machine shared with other work, requests per second swing with whatever else
runs; the CPU time the process spends per request swings much less. Each app gets
the same 64 concurrent callers (and its warm-up); the figure is process CPU time per
request, and ``1 / cpu`` ratios compare the apps like throughput ratios would, minus
the HTTP server's share (which every app pays alike).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from . import apps

VARIANTS = ("bare", "naive", "ticketd_app", "ticketd_app_without_limits")


async def _one(app: Any, headers: list[tuple[bytes, bytes]], statuses: dict[int, int]) -> None:
    scope = apps.post_scope("/v1/tickets", headers)
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses[message["status"]] = statuses.get(message["status"], 0) + 1

    await app(scope, receive, send)


async def _measure(factory: str, cookie: str, count: int, concurrency: int) -> dict[str, Any]:
    app = getattr(apps, factory)()
    headers = [
        (b"host", b"127.0.0.1"),
        (b"origin", apps.ORIGIN.encode()),
        (b"cookie", f"session={cookie}".encode()),
        (b"content-length", b"0"),
    ]
    statuses: dict[int, int] = {}

    async def worker(n: int) -> None:
        for _ in range(n):
            await _one(app, headers, statuses)

    await asyncio.gather(*(worker(20) for _ in range(concurrency)))  # warm-up
    statuses.clear()
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(count // concurrency) for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    done = sum(statuses.values())
    return {"cpu_us": cpu / done * 1e6, "ops": done / wall, "statuses": statuses}


def cpu_per_request(url: str, count: int = 6000, concurrency: int = 64) -> dict[str, Any]:
    """CPU µs per mint request for every variant (``BENCH_REDIS_URL`` = ``url``)."""
    import uvloop

    from ticketd.sessions import issue_session_cookie

    os.environ["BENCH_REDIS_URL"] = url
    cookie = issue_session_cookie({"user_id": 12345}, secret=apps.SECRET)
    out: dict[str, Any] = {}
    for factory in VARIANTS:
        out[factory] = uvloop.run(_measure(factory, cookie, count, concurrency))
    return out
