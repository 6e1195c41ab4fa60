"""Start and stop real ``redis-server`` processes on free loopback ports for tests.

Every test that needs Redis gets its own server from here, never a shared
instance, so tests may kill, pause or fill it on purpose.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import redis

REQUIRE_ENV = "TICKETD_TEST_REQUIRE_REDIS"


def redis_binary(name: str = "redis-server") -> str:
    """Path of a Redis binary, or skip (fail when CI requires Redis)."""
    path = shutil.which(name)
    if path is None:
        message = (
            f"{name} not found; install it (Debian: apt-get install redis-server, "
            f"macOS: brew install redis) to run the integration tests"
        )
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {message}")
        pytest.skip(message)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1; restartable on the same port."""

    def __init__(self, *args: str, port: int | None = None, name: str = "redis-server") -> None:
        self.binary = redis_binary(name)
        self.port = port or free_port()
        self.args = args
        self.dir = Path(tempfile.mkdtemp(prefix="ticketd-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        command = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.dir),
            "--enable-debug-command", "local",
            *self.args,
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with redis.Redis(port=self.port, socket_timeout=0.5) as client:
                    client.ping()
                    return
            except redis.RedisError:
                if self.process is not None and self.process.poll() is not None:
                    code = self.process.returncode
                    raise RuntimeError(f"redis-server exited with {code}") from None
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not become ready") from None
                time.sleep(0.02)

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
