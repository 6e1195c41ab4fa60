"""Revocation propagation: from ``revoke()`` to 4403 at the client, across two processes.

Two WebSocket server processes (``tests.revoke_ws_server``, the one the end-to-end
tests use) on one redis-server; each run opens sockets of a fresh user on both,
revokes the user, and times every close as the client sees it.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import redis.asyncio
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Origin

from ticketd import TicketIssuer, TicketStore
from ticketd.revoker import Revoker

from .procs import free_port

ROOT = Path(__file__).resolve().parent.parent
ORIGIN = "https://app.example.com"


@contextmanager
def ws_server(url: str) -> Iterator[int]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.revoke_ws_server", "--port", str(port), "--redis-url", url],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        if process.stdout.readline().strip() != "ready":
            raise RuntimeError("the WebSocket server did not start")
        yield port
    finally:
        process.kill()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


async def _closed_after(socket: ClientConnection, started: float) -> float:
    try:
        await socket.recv()
    except ConnectionClosed as exc:
        if exc.rcvd is None or exc.rcvd.code != 4403:
            raise RuntimeError(f"closed with {exc.rcvd}") from None
        return time.monotonic() - started
    raise RuntimeError("received a message instead of a close")


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def propagation(url: str, runs: int, sockets_per_server: int = 2) -> dict[str, Any]:
    client = redis.asyncio.Redis.from_url(url)
    issuer = TicketIssuer(TicketStore(client))
    revoker = Revoker(client, ttl=3600)
    samples: list[float] = []
    try:
        with ExitStack() as stack:
            ports = [stack.enter_context(ws_server(url)) for _ in range(2)]
            for run in range(runs):
                user = f"bench-revoke-{run}"
                sockets = []
                for port in ports:
                    for _ in range(sockets_per_server):
                        issued = await issuer.mint(user, origin=ORIGIN, audience="chat")
                        uri = f"ws://127.0.0.1:{port}/?ticket={issued.ticket}"
                        sockets.append(await connect(uri, origin=Origin(ORIGIN)))
                started = time.monotonic()
                await revoker.revoke(user)
                samples += await asyncio.gather(*(_closed_after(s, started) for s in sockets))
    finally:
        await client.aclose()
    return {
        "closes": len(samples),
        "p50_ms": statistics.median(samples) * 1000,
        "p99_ms": _quantile(samples, 0.99) * 1000,
        "max_ms": max(samples) * 1000,
    }
