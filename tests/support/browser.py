"""What the browser tests share: where Chromium is, how to launch it, and the skip/fail rule."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.redisproc import REQUIRE_ENV

__all__ = [
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "WAIT_MS",
    "LogLines",
    "launched_chromium",
    "require_browser",
    "require_curl",
]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 10_000


def require_browser() -> None:
    """Skip (or, with TICKETD_TEST_REQUIRE_BROWSER=1 as in CI, fail) without Chromium."""
    problem = None
    if not Path(CHROMIUM).exists():
        problem = f"{CHROMIUM} not found: apt-get install chromium"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "playwright is not installed: pip install -e '.[test]'"
    if problem is None:
        return
    if os.environ.get("TICKETD_TEST_REQUIRE_BROWSER") == "1":
        pytest.fail(problem, pytrace=False)
    pytest.skip(problem)


@contextmanager
def launched_chromium() -> Iterator[Any]:
    """Headless Debian Chromium through Playwright (skips or fails first without it)."""
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


def require_curl() -> None:
    """Skip (or, in CI, fail) without curl: the README's shell blocks use it."""
    if shutil.which("curl") is None:
        if os.environ.get(REQUIRE_ENV) == "1":  # CI: .ci/run installs it
            pytest.fail("curl not found: apt-get install curl", pytrace=False)
        pytest.skip("curl not found: apt-get install curl")


class LogLines(logging.Handler):
    """The ticketd log lines (verifier and adapter reasons), from any thread."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
