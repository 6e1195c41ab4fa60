"""Exactly-once across processes: two ``ticketd serve`` workers, two verifier processes.

Both services (separate OS processes, started as ``python -m ticketd.service.cli serve``)
mint against one real redis-server; every minted ticket is handed to BOTH verifier
processes at once, which race to redeem it. Within its TTL, each ticket must be
accepted exactly once: no double acceptance, no lost ticket.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from multiprocessing.queues import Queue

import httpx
import pytest

from tests.support.processes import wait_until_answering
from tests.support.redisproc import RedisServer, free_port
from tests.support.service_support import APP_ORIGIN, SECRET, cookie_for

DURATION = 6.0
CLIENTS = 4


def _verifier_main(url: str, inbox: Queue[str | None], results: Queue[tuple[str, str]]) -> None:
    from ticketd import StoreUnavailable, TicketRejected, TicketVerifier

    async def run() -> None:
        verifier = TicketVerifier.from_url(url, audience="chat")
        loop = asyncio.get_running_loop()
        pending: set[asyncio.Task[None]] = set()

        async def one(ticket: str) -> None:
            try:
                await verifier.redeem(ticket, origin=APP_ORIGIN)
                outcome = "ok"
            except TicketRejected as exc:
                outcome = exc.reason.value
            except StoreUnavailable:
                outcome = "unavailable"
            results.put((ticket, outcome))

        while (ticket := await loop.run_in_executor(None, inbox.get)) is not None:
            task = asyncio.create_task(one(ticket))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)
        await verifier.aclose()

    asyncio.run(run())


@pytest.fixture
def services(redis_url: str) -> Iterator[list[str]]:
    env = {
        **os.environ,
        "TICKETD_REDIS_URL": redis_url,
        "TICKETD_ALLOWED_ORIGINS": APP_ORIGIN,
        "TICKETD_SESSION_SECRET": SECRET,
        "TICKETD_AUDIENCES": "chat",
        "TICKETD_RATE_LIMIT_PER_SUBJECT": "0",
        "TICKETD_RATE_LIMIT_PER_IP": "0",
        "TICKETD_MAX_OUTSTANDING_PER_SUBJECT": "0",
        "TICKETD_LOG_LEVEL": "warning",
    }
    ports = [free_port(), free_port()]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "ticketd.service.cli", "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for port in ports
    ]
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        for base, proc in zip(bases, procs, strict=True):
            wait_until_answering(proc, f"{base}/readyz")
        yield bases
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_every_ticket_accepted_exactly_once(services: list[str], redis_server: RedisServer) -> None:
    ctx = multiprocessing.get_context("spawn")
    inboxes: list[Queue[str | None]] = [ctx.Queue(), ctx.Queue()]
    results: Queue[tuple[str, str]] = ctx.Queue()
    verifiers = [
        ctx.Process(target=_verifier_main, args=(redis_server.url, inbox, results))
        for inbox in inboxes
    ]
    for process in verifiers:
        process.start()
    minted: list[str] = []
    mint_statuses: Counter[int] = Counter()
    lock = threading.Lock()
    stop = time.monotonic() + DURATION

    def client(n: int) -> None:
        headers = {"Origin": APP_ORIGIN, "Cookie": f"session={cookie_for(f'c{n}')}"}
        with httpx.Client(timeout=10) as http:
            i = 0
            while time.monotonic() < stop:
                response = http.post(f"{services[i % 2]}/v1/tickets", headers=headers)
                i += 1
                with lock:
                    mint_statuses[response.status_code] += 1
                if response.status_code == 201:
                    ticket = response.json()["ticket"]
                    with lock:
                        minted.append(ticket)
                    for inbox in inboxes:  # both verifiers race for every ticket
                        inbox.put(ticket)

    try:
        threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        outcomes: dict[str, Counter[str]] = {t: Counter() for t in minted}
        for _ in range(2 * len(minted)):
            ticket, outcome = results.get(timeout=30)
            outcomes[ticket][outcome] += 1
    finally:
        for inbox in inboxes:
            inbox.put(None)
        for process in verifiers:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    accepted = Counter(c["ok"] for c in outcomes.values())
    others = Counter(o for c in outcomes.values() for o in c if o != "ok")
    figures = (
        f"mints={dict(mint_statuses)} tickets={len(minted)} accepted once={accepted[1]} "
        f"twice={sum(n for k, n in accepted.items() if k > 1)} lost={accepted[0]} "
        f"losing redeems={dict(others)}"
    )
    print(figures)
    assert len(minted) > 100, figures
    assert set(mint_statuses) == {201}, figures
    assert accepted == {1: len(minted)}, figures
    assert others == {"invalid": len(minted)}, figures
