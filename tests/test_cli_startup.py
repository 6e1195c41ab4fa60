"""What ``ticketd serve`` says and does around start-up: the dev banner, the Redis ping,
``check-config --connect``, and Ctrl+C. Each runs the real command in a subprocess."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.support.browser import require_curl
from tests.support.processes import environment, ticketd, wait_until_live
from tests.support.redisproc import RedisServer, free_port
from tests.support.service_support import SECRET
from ticketd.service.cli import _dev_banner
from ticketd.service.settings import build_settings

PASSWORD = "pw-that-must-not-be-printed-0123456789"


@contextmanager
def serving(
    tmp_path: Path, *args: str, env: dict[str, str], port: int
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    stderr_path = tmp_path / "stderr"
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "ticketd.service.cli", "serve", "--port", str(port), *args],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        yield process, stderr_path
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def wait_for_text(path: Path, text: str, process: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 20
    while text not in (content := path.read_text()):
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{text!r} never appeared (exit {process.returncode}):\n{content}")
        time.sleep(0.05)
    return content


def unreachable_url() -> str:
    return f"redis://ticketd:{PASSWORD}@127.0.0.1:{free_port()}/0"


# -- the dev banner -------------------------------------------------------------------------


@pytest.mark.slow
def test_dev_mode_mint_redeem_replay_with_the_printed_curl(tmp_path: Path) -> None:
    require_curl()  # the test runs the printed commands as they are
    port = free_port()
    with serving(tmp_path, "--dev", env=environment(), port=port) as (process, stderr):
        err = wait_for_text(stderr, "  readiness: curl", process)
        # Printed once uvicorn listens, not before: the curl it shows must work.
        assert err.index("Uvicorn running on") < err.index("ticketd development mode")
        assert "store:   EMBEDDED in-process store" in err
        assert "session secret: generated at start-up" in err
        assert f"allowed origins: http://127.0.0.1:{port}, http://localhost:{port}" in err
        lines = [line.strip() for line in err.splitlines()]
        start = next(i for i, line in enumerate(lines) if line.startswith("T=$(curl"))
        mint, redeem = "\n".join(lines[start : start + 3]), "\n".join(lines[start + 3 : start + 6])
        assert "Authorization: Bearer " in redeem, redeem
        # As printed: mint once, then the redeem curl twice.
        script = f"{mint}\n{redeem}\necho\n{redeem}\n"
        run = subprocess.run(
            ["sh", "-e", "-c", script], capture_output=True, text=True, timeout=30, check=False
        )
        assert run.returncode == 0, run.stderr
        first, replay = run.stdout.splitlines()
        assert '"subject":"dev-user"' in first
        assert f'"origin":"http://127.0.0.1:{port}"' in first
        assert '"code":"invalid"' in replay
        assert '"status":401' in replay


def test_dev_banner_tells_where_things_come_from() -> None:
    settings = build_settings(
        {
            "session_secret": SECRET,
            "service_keys": SECRET[::-1],
            "allowed_origins": "https://*.example.com, http://localhost:8123",
            "redis_url": f"redis://ticketd:{PASSWORD}@10.1.2.3:6380/0",
        }
    )
    banner = _dev_banner(
        settings,
        "0.0.0.0",
        8123,
        provenance={"secret": "from TICKETD_SESSION_SECRET_FILE", "service_key": "generated"},
    )
    assert "store:   Redis at 10.1.2.3:6380" in banner
    assert "EMBEDDED" not in banner
    assert PASSWORD not in banner
    assert "session secret: from TICKETD_SESSION_SECRET_FILE" in banner
    # A wildcard cannot be sent as an Origin: the first exact origin is used.
    assert "-H 'Origin: http://localhost:8123'" in banner
    assert "curl -si -X POST http://127.0.0.1:8123/v1/tickets" in banner
    assert "(service key generated)" in banner

    embedded = build_settings({"session_secret": SECRET, "allowed_origins": "http://a.test"})
    text = _dev_banner(embedded, "127.0.0.1", 8123)
    assert "EMBEDDED in-process store" in text
    assert "/v1/tickets/redeem" not in text  # no service key: the endpoint is off


def test_no_banner_when_the_port_cannot_be_bound(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = ticketd("serve", "--dev", "--port", str(port), env=environment(), cwd=tmp_path)
    assert result.returncode != 0
    assert "ticketd development mode" not in result.stderr
    assert "address already in use" in result.stderr.lower()


@pytest.mark.slow
def test_ctrl_c_exits_cleanly(tmp_path: Path) -> None:
    port = free_port()
    with serving(tmp_path, "--dev", env=environment(), port=port) as (process, stderr):
        wait_for_text(stderr, "  readiness: curl", process)
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=20)
    err = stderr.read_text()
    assert code == 130, err
    assert "Traceback" not in err
    assert "KeyboardInterrupt" not in err
    assert "Application shutdown complete." in err


# -- Redis at start-up and in check-config ---------------------------------------------------


@pytest.mark.slow
def test_start_up_warns_once_when_redis_is_unreachable(tmp_path: Path) -> None:
    url = unreachable_url()
    env = environment(
        TICKETD_REDIS_URL=url,
        TICKETD_SESSION_SECRET=SECRET,
        TICKETD_ALLOWED_ORIGINS="https://app.example.com",
        TICKETD_LOG_FORMAT="text",
    )
    port = free_port()
    with serving(tmp_path, env=env, port=port) as (process, stderr):
        wait_for_text(stderr, "is unreachable", process)
        with httpx.Client(timeout=5) as client:
            wait_until_live(client, process, stderr, port)
            assert client.get(f"http://127.0.0.1:{port}/readyz").status_code == 503
        err = stderr.read_text()
    warnings = [line for line in err.splitlines() if "is unreachable" in line]
    host_port = url.rsplit("@", 1)[1].removesuffix("/0")
    assert len(warnings) == 1, err
    assert f"Redis at {host_port} is unreachable" in warnings[0]
    assert "WARNING" in warnings[0]
    assert "/livez stays up" in warnings[0]
    assert PASSWORD not in err


def test_check_config_connect_fails_with_one_line(tmp_path: Path) -> None:
    url = unreachable_url()
    env = environment(
        TICKETD_REDIS_URL=url,
        TICKETD_SESSION_SECRET=SECRET,
        TICKETD_ALLOWED_ORIGINS="https://app.example.com",
    )
    result = ticketd("check-config", "--connect", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout.startswith("configuration OK: store=redis")
    (line,) = result.stderr.splitlines()
    host_port = url.rsplit("@", 1)[1].removesuffix("/0")
    assert line.startswith(f"ticketd: cannot connect to Redis at {host_port}: ")
    assert "onnect" in line.split(": ", 2)[2]  # the cause: connection refused, with errno
    assert PASSWORD not in result.stderr
    # Without --connect, check-config never contacts Redis (the negative control).
    assert ticketd("check-config", env=env, cwd=tmp_path).returncode == 0


@pytest.mark.redis
def test_check_config_connect_ok(tmp_path: Path, redis_server: RedisServer) -> None:
    env = environment(
        TICKETD_REDIS_URL=redis_server.url,
        TICKETD_SESSION_SECRET=SECRET,
        TICKETD_ALLOWED_ORIGINS="https://app.example.com",
    )
    result = ticketd("check-config", "--connect", env=env, cwd=tmp_path)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines()[1] == (
        f"connection OK: Redis at 127.0.0.1:{redis_server.port} answered PING "
        "and runs the redeem command (SET ... XX GET KEEPTTL)"
    )
