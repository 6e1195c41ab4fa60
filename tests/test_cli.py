"""The ``ticketd`` command in a subprocess: check-config, refused serve, and ``serve --dev``."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.processes import environment, free_port, ticketd, wait_until_live
from ticketd.service.cli import _dev_banner
from ticketd.service.settings import build_settings
from ticketd.sessions import SessionVerifier

# Obviously fake, but it passes the service's secret checks.
SECRET = "test-only-key-0123456789abcdefghijklmn"
ORIGIN = "https://app.example.com"
TICKET = re.compile(r"[A-Za-z0-9_-]{43}")
SECRET_FIX = (
    "generate one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))' "
    "(or run `ticketd serve --dev` for local development)"
)
ORIGIN_FIX = "an origin is scheme://host[:port], e.g. https://app.example.com, comma-separated"


# -- check-config ------------------------------------------------------------------------


def test_check_config_ok(tmp_path: Path) -> None:
    env = environment(TICKETD_SESSION_SECRET=SECRET, TICKETD_ALLOWED_ORIGINS=ORIGIN)
    result = ticketd("check-config", env=env, cwd=tmp_path)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == (
        "configuration OK: store=embedded (in-process, development only) "
        "origins=1 audiences=default\n"
    )
    assert SECRET not in result.stdout


def test_check_config_ok_with_redis_and_secret_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n", encoding="utf-8")
    env = environment(
        TICKETD_SESSION_SECRET_FILE=str(secret_file),
        TICKETD_ALLOWED_ORIGINS=f"{ORIGIN}, https://b.example.com",
        TICKETD_AUDIENCES="chat,feed",
        TICKETD_REDIS_URL="redis://127.0.0.1:1/0",  # not contacted by check-config
    )
    result = ticketd("check-config", env=env, cwd=tmp_path)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "configuration OK: store=redis origins=2 audiences=chat,feed\n"


def test_check_config_ignores_the_callers_ticketd_variables(tmp_path: Path) -> None:
    # environment() must really drop inherited TICKETD_*: otherwise this test proves nothing.
    env = environment(TICKETD_SESSION_SECRET=SECRET)
    result = ticketd("check-config", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == (
        "ticketd: configuration error: TICKETD_ALLOWED_ORIGINS: "
        f"at least one allowed origin is required; fix: {ORIGIN_FIX}\n"
    )


def test_check_config_bad(tmp_path: Path) -> None:
    placeholder = "changeme-0123456789abcdefghijklmnopqrstu"
    fallback = "short-fallback-value"
    env = environment(
        TICKETD_SESSION_SECRET=placeholder,
        TICKETD_SESSION_SECRET_FALLBACKS=fallback,
        TICKETD_ALLOWED_ORIGINS=f"{ORIGIN}/path",
        TICKETD_TICKET_TTL="0",
    )
    result = ticketd("check-config", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert sorted(result.stderr.splitlines()) == [
        "ticketd: configuration error: TICKETD_ALLOWED_ORIGINS: entry 1 "
        f"'{ORIGIN}/path': origin must be scheme://host[:port] with nothing else; "
        f"fix: {ORIGIN_FIX}",
        "ticketd: configuration error: TICKETD_SESSION_SECRET: "
        "the session secret looks like a placeholder; generate a random one; "
        f"fix: {SECRET_FIX}",
        "ticketd: configuration error: TICKETD_SESSION_SECRET_FALLBACKS: "
        f"a fallback secret is shorter than 32 bytes; fix: {SECRET_FIX}",
        "ticketd: configuration error: TICKETD_TICKET_TTL: "
        "Input should be greater than or equal to 1",
    ]
    for secret in (placeholder, fallback):
        assert secret not in result.stdout
        assert secret not in result.stderr


def test_check_config_missing_secret_file(tmp_path: Path) -> None:
    env = environment(
        TICKETD_SESSION_SECRET_FILE=str(tmp_path / "missing"), TICKETD_ALLOWED_ORIGINS=ORIGIN
    )
    result = ticketd("check-config", env=env, cwd=tmp_path)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "ticketd: configuration error: TICKETD_SESSION_SECRET_FILE: "
        "cannot read the file (No such file or directory)\n"
    )


def test_serve_bad_config_refused(tmp_path: Path) -> None:
    env = environment(TICKETD_SESSION_SECRET=SECRET[:20], TICKETD_ALLOWED_ORIGINS=ORIGIN)
    result = ticketd("serve", "--port", "1", env=env, cwd=tmp_path)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "ticketd: configuration error: TICKETD_SESSION_SECRET: "
        f"the session secret is shorter than 32 bytes; fix: {SECRET_FIX}\n"
    )
    assert SECRET[:20] not in result.stderr


def test_serve_workers_with_embedded_store_refused(tmp_path: Path) -> None:
    env = environment(TICKETD_SESSION_SECRET=SECRET, TICKETD_ALLOWED_ORIGINS=ORIGIN)
    # Port 1 could not be bound anyway: a refusal must come before any server starts.
    result = ticketd("serve", "--workers", "2", "--port", "1", env=env, cwd=tmp_path)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "ticketd: configuration error: --workers > 1 needs TICKETD_REDIS_URL "
        "(the embedded store lives in one process)\n"
    )


def test_no_command_is_a_usage_error(tmp_path: Path) -> None:
    result = ticketd(env=environment(), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "usage: ticketd" in result.stderr


# -- serve --dev ------------------------------------------------------------------------


@pytest.mark.slow
def test_serve_dev(tmp_path: Path) -> None:
    port = free_port()
    stderr_path = tmp_path / "stderr"
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "ticketd.service.cli", "serve", "--dev", "--port", str(port)],
            env=environment(),
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        with httpx.Client(timeout=5) as client:
            wait_until_live(client, process, stderr_path, port)
            err = stderr_path.read_text()
            assert "TICKETD_REDIS_URL is not set: running on the EMBEDDED in-process store" in err
            assert "Do not use this in production" in err
            curl = re.search(
                rf"curl -si -X POST http://127\.0\.0\.1:{port}/v1/tickets "
                r"-H 'Origin: ([^']+)' \\\n\s+-H 'Cookie: (session=[^']+)'",
                err,
            )
            assert curl is not None, err
            origin, cookie = curl.groups()
            assert origin == f"http://127.0.0.1:{port}"

            url = f"http://127.0.0.1:{port}/v1/tickets"
            response = client.post(url, headers={"Origin": origin, "Cookie": cookie})
            assert response.status_code == 201, response.text
            body = response.json()
            assert TICKET.fullmatch(body["ticket"])
            assert body["expires_in"] == 30

            # The printed cookie is what makes it work, and the printed Origin is bound.
            refused = client.post(url, headers={"Origin": origin})
            assert refused.status_code == 401
            refused = client.post(
                url, headers={"Origin": "http://evil.invalid:1", "Cookie": cookie}
            )
            assert refused.status_code == 403
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
    # A clean shutdown: the lifespan ran to completion, then uvicorn re-raised SIGTERM
    # so that the exit status says why the process stopped (as for any SIGTERM'd program).
    err = stderr_path.read_text()
    assert code == -signal.SIGTERM, err
    assert "Application shutdown complete." in err
    assert f"Finished server process [{process.pid}]" in err
    assert "Traceback" not in err


def test_dev_banner_follows_the_settings() -> None:
    # The secret may come from TICKETD_SESSION_SECRET_FILE (not in os.environ), and the
    # cookie name and subject key are configurable: the printed cookie must still work.
    settings = build_settings(
        {
            "session_secret": SECRET,
            "allowed_origins": ORIGIN,
            "session_cookie": "app_session",
            "session_subject_key": "uid",
        }
    )
    banner = _dev_banner(settings, "127.0.0.1", 8123)
    found = re.search(r"-H 'Cookie: (app_session=[^']+)'", banner)
    assert found is not None, banner
    verifier = SessionVerifier("ticketd", secret=SECRET, subject_key="uid")
    assert verifier.subject([found.group(1)], cookie_name="app_session") == "dev-user"
    assert SECRET not in banner

    flask = build_settings(
        {"session_secret": SECRET, "allowed_origins": ORIGIN, "session_format": "flask"}
    )
    assert "Cookie:" not in _dev_banner(flask, "127.0.0.1", 8123)


@pytest.mark.slow
def test_sigterm_drains_before_exiting(tmp_path: Path) -> None:
    """With --drain-seconds, SIGTERM first turns /readyz to 503 while /livez stays 200."""
    port = free_port()
    stderr_path = tmp_path / "stderr"
    env = environment(
        TICKETD_ALLOWED_ORIGINS=ORIGIN, TICKETD_SESSION_SECRET=SECRET, TICKETD_LOG_FORMAT="text"
    )
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ticketd.service.cli",
                "serve",
                "--port",
                str(port),
                "--drain-seconds",
                "3",
            ],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        with httpx.Client(timeout=5) as client:
            wait_until_live(client, process, stderr_path, port)
            base = f"http://127.0.0.1:{port}"
            assert client.get(f"{base}/readyz").status_code == 200
            process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 10
            while client.get(f"{base}/readyz").status_code != 503:
                assert time.monotonic() < deadline, "readiness never turned false"
                time.sleep(0.05)
            assert process.poll() is None  # still serving during the drain
            assert client.get(f"{base}/livez").status_code == 200
            assert client.get(f"{base}/readyz").json()["code"] == "not_ready"
        code = process.wait(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    err = stderr_path.read_text()
    assert code == -signal.SIGTERM, err
    assert "draining: /readyz answers 503" in err
    assert "Application shutdown complete." in err
