"""``ticketd serve`` bounds request heads: size (431) and time (408), under both parsers.

Real ``ticketd serve`` subprocesses, raw loopback sockets, the server's RSS read from
``/proc/<pid>/status`` while the attacking connections are still open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.redisproc import free_port

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/status").exists(), reason="needs /proc to read the server's RSS"
)

SECRET = "test-only-session-key-0123456789abcdefghij"
HEADER_TIMEOUT = 2.0
MAX_HEADER_BYTES = 32 * 1024
FLOOD_CONNECTIONS = 32
FLOOD_BYTES = 2 * 1024 * 1024  # per connection: 64 MiB in all, if the server kept it
RSS_BUDGET_KIB = 24 * 1024
SLOW_CONNECTIONS = 12
HEAD = b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n"
PAD_LINE = b"X-Pad: " + b"a" * 1000 + b"\r\n"


@dataclass
class Server:
    pid: int
    port: int
    stderr: Path

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS line")


@contextlib.contextmanager
def ticketd_serve(tmp_path: Path, parser: str) -> Iterator[Server]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKETD_")}
    env.update(
        TICKETD_ALLOWED_ORIGINS="https://app.example.com",
        TICKETD_SESSION_SECRET=SECRET,
        TICKETD_HEADER_TIMEOUT=str(HEADER_TIMEOUT),
        TICKETD_MAX_HEADER_BYTES=str(MAX_HEADER_BYTES),
        TICKETD_LOG_FORMAT="text",
    )
    stderr = tmp_path / f"serve-{parser}.log"
    command = [sys.executable, "-m", "ticketd.service.cli", "serve", "--port", str(port)]
    with stderr.open("wb") as sink:
        process = subprocess.Popen(
            [*command, "--http", parser], env=env, cwd=tmp_path, stdout=sink, stderr=sink
        )
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, stderr.read_text()
            assert time.monotonic() < deadline, f"ticketd did not start: {stderr.read_text()}"
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"http://127.0.0.1:{port}/livez", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        yield Server(process.pid, port, stderr)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(params=["h11", "httptools"], scope="module")
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    with ticketd_serve(tmp_path_factory.mktemp("serve"), request.param) as running:
        yield running


def status_and_code(answer: bytes) -> tuple[int, str | None]:
    if not answer.startswith(b"HTTP/1.1 "):
        return 0, None
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    try:
        code = json.loads(body).get("code")
    except ValueError:
        code = None
    return status, code


async def read_answer(reader: asyncio.StreamReader, within: float) -> bytes:
    """Everything the server sends until it closes (or ``within`` seconds)."""
    data = b""
    with contextlib.suppress(TimeoutError, ConnectionError):
        async with asyncio.timeout(within):
            while chunk := await reader.read(65536):
                data += chunk
    return data


async def flood(port: int) -> tuple[asyncio.StreamWriter, asyncio.Task[bytes]]:
    """Send up to FLOOD_BYTES of header lines; stop when the server answers or stops reading."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answer = asyncio.create_task(read_answer(reader, within=10))
    writer.write(HEAD)
    chunk = PAD_LINE * 16
    sent = 0
    while sent < FLOOD_BYTES and not answer.done():
        writer.write(chunk)
        sent += len(chunk)
        drain = asyncio.ensure_future(writer.drain())
        await asyncio.wait({drain, answer}, timeout=2, return_when=asyncio.FIRST_COMPLETED)
        if not drain.done():  # the server stopped reading: its answer is on the way
            drain.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await drain
        if not drain.done() or drain.cancelled():
            break
    return writer, answer


async def flood_all(server: Server) -> tuple[int, list[tuple[int, str | None]]]:
    """The server's peak RSS while FLOOD_CONNECTIONS are open, and what each was answered."""
    floods = await asyncio.gather(*(flood(server.port) for _ in range(FLOOD_CONNECTIONS)))
    rss = server.rss_kib()  # the connections are all still open here
    answers = [status_and_code(await answer) for _, answer in floods]
    for writer, _ in floods:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return rss, answers


def test_huge_headers_get_431_and_memory_stays_bounded(server: Server) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=5) as client:
        for _ in range(20):  # warm up the paths a legitimate request takes
            assert client.get("/livez").status_code == 200
        before = server.rss_kib()
        # A big but legal head passes: the limit is on the head, not on reasonable cookies.
        big = client.get("/livez", headers={"Cookie": "a=" + "b" * (MAX_HEADER_BYTES - 2048)})
        assert big.status_code == 200
    rss, answers = asyncio.run(flood_all(server))
    growth = rss - before
    print(f"RSS before {before} KiB, under {FLOOD_CONNECTIONS} floods {rss} KiB (+{growth})")
    assert answers == [(431, "headers_too_large")] * FLOOD_CONNECTIONS
    assert growth < RSS_BUDGET_KIB, f"RSS grew by {growth} KiB under the header flood"
    log = server.stderr.read_text()
    assert "request head refused code=headers_too_large status=431" in log


async def slow_client(port: int, kind: str) -> tuple[float, bytes]:
    """Open a connection that never completes a head; how long until the server closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if kind == "after_a_response":
        writer.write(HEAD + b"\r\n")
        response = await reader.readuntil(b"\r\n\r\n")
        length = int(response.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
    started = time.monotonic()
    if kind in ("trickle", "after_a_response"):
        writer.write(HEAD + b"X-Slow: ")

    async def trickle() -> None:
        with contextlib.suppress(ConnectionError):
            for _ in range(int(6 * HEADER_TIMEOUT / 0.25)):  # bounded: 6 x the timeout
                await asyncio.sleep(0.25)
                if kind != "idle":
                    writer.write(b"\r\n" if kind == "crlf" else b"a")
                    await writer.drain()

    dripping = asyncio.create_task(trickle())
    answer = await read_answer(reader, within=4 * HEADER_TIMEOUT)
    closed_after = time.monotonic() - started
    dripping.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await dripping
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()
    return closed_after, answer


KINDS = ("trickle", "after_a_response", "idle", "crlf")


def test_slow_heads_are_closed_by_the_server(server: Server) -> None:
    async def attack() -> list[tuple[float, bytes]]:
        kinds = [KINDS[i % len(KINDS)] for i in range(SLOW_CONNECTIONS)]
        return await asyncio.gather(*(slow_client(server.port, kind) for kind in kinds))

    results = asyncio.run(attack())
    for index, (closed_after, answer) in enumerate(results):
        kind = KINDS[index % len(KINDS)]
        # Closed by the server: the client would have gone on for 6 x the timeout.
        assert closed_after < 3 * HEADER_TIMEOUT, (kind, closed_after)
        if kind == "crlf" and status_and_code(answer)[0] == 400:
            continue  # h11 refuses blank lines before a request line at once
        assert closed_after >= HEADER_TIMEOUT * 0.9, (kind, closed_after)
        expected = (0, None) if kind == "idle" else (408, "header_timeout")
        assert status_and_code(answer) == expected, (kind, answer[:80])
    print("slow heads closed after", sorted(round(t, 2) for t, _ in results), "s")
