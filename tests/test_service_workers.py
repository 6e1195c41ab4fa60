"""`ticketd serve --workers 2`: both workers share Redis, /metrics adds up all workers."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.processes import environment, free_port, wait_until_live
from tests.support.service_support import APP_ORIGIN, SECRET, cookie_for


@pytest.mark.slow
def test_two_workers_share_redis_and_metrics(redis_url: str, tmp_path: Path) -> None:
    port = free_port()
    stderr_path = tmp_path / "stderr"
    env = environment(
        TICKETD_REDIS_URL=redis_url,
        TICKETD_ALLOWED_ORIGINS=APP_ORIGIN,
        TICKETD_SESSION_SECRET=SECRET,
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
    )
    (tmp_path / "metrics").mkdir()
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ticketd.service.cli",
                "serve",
                "--port",
                str(port),
                "--workers",
                "2",
            ],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        pids: set[str] = set()
        with httpx.Client(timeout=5) as client:
            wait_until_live(client, process, stderr_path, port)
            minted = 0
            for _ in range(40):
                # A fresh connection each time, so the kernel spreads them over workers.
                with httpx.Client(timeout=5) as one:
                    response = one.post(
                        f"{base}/v1/tickets",
                        headers={"Origin": APP_ORIGIN, "Cookie": f"session={cookie_for('w')}"},
                    )
                    minted += response.status_code == 201
            refused = sum(
                client.post(
                    f"{base}/v1/tickets", headers={"Origin": "https://x.example"}
                ).status_code
                == 403
                for _ in range(7)
            )
            text = client.get(f"{base}/metrics").text
        pids = set(re.findall(r"Started server process \[(\d+)\]", stderr_path.read_text()))
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert len(pids) == 2, stderr_path.read_text()
    # The default cap of 20 outstanding tickets per subject holds across both workers,
    # because its counters live in the shared Redis, not in a worker.
    assert (minted, refused) == (20, 7)
    assert 'ticketd_mints_total{outcome="ok"} 20.0' in text
    assert 'ticketd_mints_total{outcome="too_many_outstanding"} 20.0' in text
    assert 'ticketd_mints_total{outcome="origin_not_allowed"} 7.0' in text
    assert 'ticketd_build_info{version="' in text
