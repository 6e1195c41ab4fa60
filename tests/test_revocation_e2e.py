"""Revocation end to end: real WebSocket server processes, the HTTP service, real Redis.

Two ``tests.revoke_ws_server`` processes hold live sockets of one user; ``POST
/v1/revocations`` must close every one with 4403 within a second, on standalone
Redis and on a three-master Cluster, and a ticket minted before the revocation
must be refused. With the feed's Redis connection killed (``CLIENT KILL``) during
the revocation, the sweep closes the socket instead, and counts it.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Origin

from tests.support.redis_topologies import ClusterTopology, redis_cluster
from tests.support.redisproc import RedisServer, free_port
from tests.support.service_support import (
    APP_ORIGIN,
    SERVICE_KEY,
    cookie_for,
    make_settings,
    running_service,
)

pytestmark = [pytest.mark.redis, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
USER = "user-42"
FEED_USER, FEED_PASSWORD = "feed", "test-only-feed-password"


@contextmanager
def ws_server(redis_url: str, *, cluster: bool = False, **options: Any) -> Iterator[int]:
    """One WebSocket server process; yields its port."""
    port = free_port()
    command = [sys.executable, "-m", "tests.revoke_ws_server", "--port", str(port)]
    command += ["--redis-url", redis_url] + (["--cluster"] if cluster else [])
    for name, value in options.items():
        command += [f"--{name.replace('_', '-')}", str(value)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.strip() == "ready", f"server did not start: {line!r}"
        yield port
    finally:
        process.kill()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def fetch(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        text: str = response.read().decode()
        return text


def stats(port: int) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(fetch(port, "/stats"))
    return data


def mint_response(http: httpx.Client, cookie: str) -> httpx.Response:
    return http.post(
        "/v1/tickets",
        headers={"Origin": APP_ORIGIN, "Cookie": f"session={cookie}"},
        json={"audience": "chat"},
    )


def mint(http: httpx.Client, cookie: str) -> str:
    response = mint_response(http, cookie)
    assert response.status_code == 201, response.text
    ticket: str = response.json()["ticket"]
    return ticket


async def open_socket(port: int, ticket: str) -> ClientConnection:
    return await connect(f"ws://127.0.0.1:{port}/?ticket={ticket}", origin=Origin(APP_ORIGIN))


async def closed_code(socket: ClientConnection) -> int:
    with pytest.raises(ConnectionClosed) as closed:
        await socket.recv()
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code


def revoke(http: httpx.Client, **body: Any) -> httpx.Response:
    return http.post(
        "/v1/revocations", headers={"Authorization": f"Bearer {SERVICE_KEY}"}, json=body
    )


@pytest.fixture(params=["standalone", "cluster"])
def topology(request: pytest.FixtureRequest) -> Iterator[tuple[str, bool]]:
    with ExitStack() as stack:
        if request.param == "cluster":
            cluster: ClusterTopology = stack.enter_context(redis_cluster())
            yield cluster.url, True
        else:
            server = RedisServer().start()
            stack.callback(server.close)
            yield server.url, False


async def test_revocation_closes_every_socket_of_the_user_within_a_second(
    topology: tuple[str, bool],
) -> None:
    url, cluster = topology
    settings = make_settings(url, redis_cluster=cluster)
    cookie = cookie_for(USER)
    with (
        running_service(settings) as base,
        httpx.Client(base_url=base, timeout=10) as http,
        ws_server(url, cluster=cluster) as a,
        ws_server(url, cluster=cluster) as b,
    ):
        sockets = [await open_socket(port, mint(http, cookie)) for port in (a, a, b, b)]
        bystander = await open_socket(b, mint(http, cookie_for("someone-else")))
        held = mint(http, cookie)  # minted before the revocation, redeemed after it
        for socket in sockets:  # they are live: they echo
            await socket.send("ping")
            assert await socket.recv() == "ping"

        started = time.monotonic()
        response = revoke(http, subject=USER, reason="logout")
        assert response.status_code == 202, response.text
        assert response.json()["kind"] == "subject"
        codes = await asyncio.wait_for(asyncio.gather(*map(closed_code, sockets)), 5)
        elapsed = time.monotonic() - started
        assert codes == [4403] * 4
        assert elapsed < 1.0, f"closed after {elapsed:.3f}s"

        with pytest.raises(InvalidStatus) as refused:
            await open_socket(a, held)
        assert refused.value.response.status_code == 403
        # The mint refuses the login from before the revocation, too.
        again = mint_response(http, cookie)
        assert again.status_code == 401
        assert again.json()["code"] == "session_revoked"
        # Control: another user's socket is untouched.
        await bystander.send("still here")
        assert await bystander.recv() == "still here"
        await bystander.close()
        pushed = [stats(port) for port in (a, b)]
        assert [s["closed"] for s in pushed] == [{"push": 2}, {"push": 2}]
        assert max(p for s in pushed for p in s["propagation"]) < 1.0


async def test_the_sweep_closes_a_socket_whose_push_was_lost() -> None:
    server = RedisServer().start()
    admin: Any = server.client()
    try:
        admin.execute_command(
            "ACL", "SETUSER", FEED_USER, "on", f">{FEED_PASSWORD}", "~*", "&*", "+@all"
        )
        feed_url = f"redis://{FEED_USER}:{FEED_PASSWORD}@127.0.0.1:{server.port}/0"
        settings = make_settings(server.url)
        interval = 1.0
        with (
            running_service(settings) as base,
            httpx.Client(base_url=base, timeout=10) as http,
            ws_server(server.url, feed_url=feed_url, sweep_interval=interval) as port,
        ):
            socket = await open_socket(port, mint(http, cookie_for(USER)))
            await socket.send("ping")
            assert await socket.recv() == "ping"
            # Kill the feed's connection and keep it out while the revocation happens.
            admin.execute_command("ACL", "SETUSER", FEED_USER, "off")
            killed = admin.execute_command("CLIENT", "KILL", "USER", FEED_USER)
            assert killed >= 1
            started = time.monotonic()
            assert revoke(http, subject=USER).status_code == 202
            code = await asyncio.wait_for(closed_code(socket), interval * 1.25 + 3)
            elapsed = time.monotonic() - started
            assert code == 4403
            assert elapsed < interval * 1.25 + 1.0, f"closed after {elapsed:.3f}s"
            seen = stats(port)
            assert seen["closed"] == {"sweep": 1}
            assert seen["feed_errors"] >= 1
            metrics = fetch(port, "/metrics")
            assert 'ticketd_revocation_closed_total{cause="sweep"} 1.0' in metrics
            assert "ticketd_revocation_sweep_closed_total 1.0" in metrics
    finally:
        admin.close()
        server.close()


def test_revocations_endpoint_validates_and_authenticates(redis_url: str) -> None:
    with (
        running_service(make_settings(redis_url)) as base,
        httpx.Client(base_url=base, timeout=10) as http,
    ):
        assert http.post("/v1/revocations", json={"subject": USER}).status_code == 401
        for body in (
            {},
            {"subject": True},
            {"subject": USER, "session": "a", "connection": "b"},
            {"subject": USER, "session": "a", "except_session": "b"},
            {"subject": USER, "connection": "not an id"},
            {"subject": USER, "other": 1},
            {"subject": 2**60},
        ):
            response = revoke(http, **body)
            assert response.status_code == 400, body
            assert response.json()["code"] == "invalid_body"
        ok = revoke(http, subject=USER, session="s-1")
        assert ok.status_code == 202
        assert ok.json()["kind"] == "session"
        with redis.Redis.from_url(redis_url) as client:
            keys = client.keys("ticketd:rv:*")
            assert len(keys) == 1
            assert USER.encode() not in keys[0]  # hashed, never the raw user id
            assert 0 < client.pttl(keys[0]) <= 14 * 24 * 3600 * 1000
            assert client.xlen("ticketd:revocations") == 1
