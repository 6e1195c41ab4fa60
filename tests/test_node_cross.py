"""Cross-language proof on a real redis-server: ``ticketd serve`` mints, Node redeems.

- tickets minted by ``ticketd serve`` open a socket on a Node ``ws`` server behind
  ``ticketUpgrade`` (redeeming in Redis, and through ``POST /v1/tickets/redeem``),
  with replays and foreign origins refused before the 101;
- the exactly-once race: a Python verifier and a Node verifier redeem the same
  tickets at the same time; each ticket is accepted exactly once (0 doubles, 0 lost).
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin, Subprotocol

from tests.support.nodeproc import NodeProcess, node_binary, node_echo_server, ticketd_serve
from tests.support.redisproc import RedisServer
from tests.support.service_support import APP_ORIGIN, SECRET, SERVICE_KEY, cookie_for, ticket_keys
from ticketd import StoreUnavailable, TicketRejected, TicketVerifier
from ticketd.tickets import log_id

pytestmark = [pytest.mark.redis, pytest.mark.node]

RACE_TICKETS = 1000


@pytest.fixture(scope="module")
def mint_service(redis_server: RedisServer) -> Iterator[str]:
    node_binary()
    env = {
        "TICKETD_REDIS_URL": redis_server.url,
        "TICKETD_ALLOWED_ORIGINS": APP_ORIGIN,
        "TICKETD_SESSION_SECRET": SECRET,
        "TICKETD_AUDIENCES": "chat",
        "TICKETD_SERVICE_KEYS": SERVICE_KEY,
        "TICKETD_RATE_LIMIT_PER_SUBJECT": "0",
        "TICKETD_RATE_LIMIT_PER_IP": "0",
        "TICKETD_MAX_OUTSTANDING_PER_SUBJECT": "0",
        "TICKETD_TICKET_TTL": "300",  # minting the race's tickets on a loaded machine takes a while
    }
    with ticketd_serve(env) as base:
        yield base


def mint(base: str, subject: str = "user-42") -> str:
    headers = {"Origin": APP_ORIGIN, "Cookie": f"session={cookie_for(subject)}"}
    response = httpx.post(f"{base}/v1/tickets", headers=headers, timeout=10)
    assert response.status_code == 201, response.text
    return str(response.json()["ticket"])


def open_ws(
    url: str, *, origin: str | None = APP_ORIGIN, subprotocols: list[str] | None = None
) -> ClientConnection:
    return connect(
        url,
        origin=Origin(origin) if origin is not None else None,
        subprotocols=[Subprotocol(p) for p in subprotocols] if subprotocols else None,
        open_timeout=10,
    )


def status_of(
    url: str, *, origin: str | None = APP_ORIGIN, subprotocols: list[str] | None = None
) -> int:
    try:
        with open_ws(url, origin=origin, subprotocols=subprotocols):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


@pytest.mark.parametrize("redeem_via", ["redis", "http"])
def test_tickets_minted_by_ticketd_serve_open_node_sockets(
    mint_service: str, redis_server: RedisServer, redis_url: str, redeem_via: str
) -> None:
    # redis_url flushes the shared server first: the key count asserted below is this test's.
    env = {"AUDIENCE": "chat"}
    if redeem_via == "redis":
        env["TICKETD_REDIS_URL"] = redis_url
    else:
        env |= {
            "TICKETD_REDEEM_URL": f"{mint_service}/v1/tickets/redeem",
            "TICKETD_SERVICE_KEY": SERVICE_KEY,
        }
    with node_echo_server(env) as node, redis_server.client() as client:
        ws = f"ws://127.0.0.1:{node.port}/ws"  # type: ignore[attr-defined]
        ticket = mint(mint_service, "user-42")
        with open_ws(f"{ws}?ticket={ticket}") as socket:
            socket.send("hello")
            assert socket.recv(timeout=10) == "user-42:hello"
        assert status_of(f"{ws}?ticket={ticket}") == 401  # replay

        ticket = mint(mint_service, "user-43")
        with open_ws(ws, subprotocols=["ticketd.v1", f"ticket.{ticket}"]) as socket:
            assert socket.subprotocol == "ticketd.v1"
            socket.send("hi")
            assert socket.recv(timeout=10) == "user-43:hi"

        stolen = mint(mint_service)
        assert status_of(f"{ws}?ticket={stolen}", origin="https://evil.example.com") == 403
        assert status_of(f"{ws}?ticket={stolen}") == 401  # the evil attempt burned it
        assert ticket_keys(client) == []
        refused = [e["line"] for e in node.events("log") if "refused" in e["line"]]
        assert f"reason=origin_mismatch ticket={log_id(stolen)}" in " ".join(refused)
        assert all(stolen not in line for line in node.seen)


async def python_redeems(
    url: str, tickets: list[str], order: list[int], concurrency: int
) -> list[str]:
    verifier = TicketVerifier.from_url(url, audience="chat")
    outcomes = [""] * len(tickets)
    positions = iter(order)

    async def worker() -> None:
        for i in positions:
            try:
                await verifier.redeem(tickets[i], origin=APP_ORIGIN)
                outcomes[i] = "ok"
            except TicketRejected as exc:
                outcomes[i] = exc.reason.value
            except StoreUnavailable:
                outcomes[i] = "unavailable"

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    await verifier.aclose()
    return outcomes


async def mint_many(base: str, count: int) -> list[str]:
    async with httpx.AsyncClient(timeout=10) as http:
        semaphore = asyncio.Semaphore(8)

        async def one(n: int) -> str:
            headers = {"Origin": APP_ORIGIN, "Cookie": f"session={cookie_for(f'racer-{n % 50}')}"}
            for _ in range(5):  # a loaded machine can push the mint past its store deadline: 503
                async with semaphore:
                    response = await http.post(f"{base}/v1/tickets", headers=headers)
                if response.status_code != 503:
                    break
                await asyncio.sleep(0.2)
            assert response.status_code == 201, response.text
            return str(response.json()["ticket"])

        return list(await asyncio.gather(*(one(n) for n in range(count))))


@pytest.mark.slow
def test_python_and_node_verifiers_race_for_the_same_tickets(
    mint_service: str, redis_server: RedisServer
) -> None:
    tickets = asyncio.run(mint_many(mint_service, RACE_TICKETS))
    # Each side walks the tickets in its own random order: they collide all along the
    # way, and neither can take every ticket just by starting first.
    python_order, node_order = list(range(len(tickets))), list(range(len(tickets)))
    random.Random(1).shuffle(python_order)
    random.Random(2).shuffle(node_order)
    node = NodeProcess("redeem-many.js", {})
    try:
        job = {"redis": redis_server.url, "audience": "chat", "origin": APP_ORIGIN}
        node.send(json.dumps({**job, "tickets": tickets, "order": node_order, "concurrency": 32}))
        assert node.next_line() == "ready"
        node.send("go")
        python = asyncio.run(python_redeems(redis_server.url, tickets, python_order, 32))
        node_outcomes = json.loads(node.next_line())
    finally:
        node.stop()
    accepted = Counter(
        (p == "ok") + (n == "ok") for p, n in zip(python, node_outcomes, strict=True)
    )
    losers = Counter(
        o for pair in zip(python, node_outcomes, strict=True) for o in pair if o != "ok"
    )
    won = Counter(
        "python" if p == "ok" else "node"
        for p, n in zip(python, node_outcomes, strict=True)
        if "ok" in (p, n)
    )
    figures = (
        f"tickets={len(tickets)} accepted once={accepted[1]} twice={accepted[2]} "
        f"lost={accepted[0]} won by={dict(won)} losing redeems={dict(losers)}"
    )
    print(figures)
    assert accepted == {1: len(tickets)}, figures
    assert losers == {"invalid": len(tickets)}, figures
    assert won["python"] > 0, f"no real race: {figures}"
    assert won["node"] > 0, f"no real race: {figures}"
