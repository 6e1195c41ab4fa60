"""Running the ``ticketd`` command in subprocesses for tests.

The environment is this process's (minus ``TICKETD_*``), so coverage's
``COVERAGE_PROCESS_START`` reaches the child and its code is measured too.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.support.redisproc import free_port

__all__ = ["environment", "free_port", "ticketd", "wait_until_answering", "wait_until_live"]


def environment(**values: str) -> dict[str, str]:
    """This process's environment without any TICKETD_* variable, plus ``values``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKETD_")}
    env.update(values)
    return env


def ticketd(
    *args: str, env: dict[str, str], cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ticketd.service.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def wait_until_live(
    client: httpx.Client, process: subprocess.Popen[bytes], stderr: Path, port: int
) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"ticketd exited with {process.returncode}: {stderr.read_text()}")
        try:
            if client.get(f"http://127.0.0.1:{port}/livez").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"ticketd did not come up within 20 s: {stderr.read_text()}")


def wait_until_answering(
    process: subprocess.Popen[bytes],
    url: str,
    *,
    timeout: float = 30,
    diagnostics: Callable[[], str] = lambda: "",
) -> None:
    """Poll ``url`` (a ``/readyz`` or ``/livez``) until it answers 200; fail the test if
    ``process`` exits first or ``timeout`` seconds pass (``diagnostics()`` says why)."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            pytest.fail(f"ticketd serve exited with {process.returncode}: {diagnostics()}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"ticketd serve did not answer {url} within {timeout} s: {diagnostics()}")
        time.sleep(0.1)
