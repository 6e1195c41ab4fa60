"""Node.js processes for the cross-language tests: the ``node/`` package's fixtures.

The tests need Node.js >= 20 and ``node/node_modules`` (``make test`` runs ``npm ci``
first). Without them they skip, or fail when ``TICKETD_TEST_REQUIRE_NODE=1`` (CI).
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import wait_until_answering
from tests.support.redisproc import free_port

NODE_DIR = Path(__file__).resolve().parents[2] / "node"
FIXTURES = NODE_DIR / "test" / "fixtures"
REQUIRE_ENV = "TICKETD_TEST_REQUIRE_NODE"


def node_binary() -> str:
    """Path of ``node`` (>= 20, with the package installed), or skip (fail in CI)."""
    problem = None
    path = shutil.which("node")
    if path is None:
        problem = "node not found: apt-get install nodejs npm"
    else:
        version = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
        major = int(version.stdout.strip().lstrip("v").split(".")[0] or 0)
        if major < 20:
            problem = f"node {version.stdout.strip()} is too old: the package needs >= 20"
        elif not (NODE_DIR / "node_modules" / "ws").is_dir():
            problem = "node/node_modules is missing: (cd node && npm ci)"
    if problem is None:
        assert path is not None
        return path
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but {problem}", pytrace=False)
    pytest.skip(problem)


class NodeProcess:
    """A Node script whose stdout lines are collected (JSON lines where it writes them)."""

    def __init__(self, script: str, env: Mapping[str, str]) -> None:
        self.process = subprocess.Popen(
            [node_binary(), str(FIXTURES / script)],
            cwd=NODE_DIR,
            env={**os.environ, **env},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=sys.stderr,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.seen.append(line.rstrip("\n"))
            self.lines.put(line.rstrip("\n"))

    def next_line(self, timeout: float = 60) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"node printed nothing for {timeout} s") from None

    def wait_event(self, event: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            line = self.next_line(max(0.1, deadline - time.monotonic()))
            value = json.loads(line)
            if isinstance(value, dict) and value.get("event") == event:
                return value

    def events(self, event: str) -> list[dict[str, Any]]:
        values = [json.loads(line) for line in list(self.seen)]
        return [v for v in values if isinstance(v, dict) and v.get("event") == event]

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=10)
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()


@contextmanager
def node_echo_server(env: Mapping[str, str], *, port: int | None = None) -> Iterator[NodeProcess]:
    """``node/test/fixtures/echo-server.js``: ticketUpgrade in front of a ws echo."""
    process = NodeProcess("echo-server.js", {**env, "PORT": str(port or 0)})
    try:
        process.port = int(process.wait_event("listening")["port"])  # type: ignore[attr-defined]
        yield process
    finally:
        process.stop()


@contextmanager
def ticketd_serve(env: Mapping[str, str]) -> Iterator[str]:
    """``ticketd serve`` in its own process; yields its base URL once ready."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ticketd.service.cli", "serve", "--port", str(port)],
        env={**os.environ, "TICKETD_LOG_LEVEL": "warning", **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(proc, f"{base}/readyz")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
