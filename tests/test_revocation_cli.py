"""``ticketd revoke`` in a subprocess against a real redis-server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.cookies import KEY as SECRET
from tests.support.processes import environment
from ticketd.revocation import session_hash, subject_id

pytestmark = pytest.mark.redis


def revoke(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ticketd.service.cli", "revoke", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_revoke_writes_the_state_and_the_event(
    tmp_path: Path, redis_url: str, redis_sync: redis.Redis
) -> None:
    env = environment(
        TICKETD_SESSION_SECRET=SECRET,
        TICKETD_ALLOWED_ORIGINS="https://app.example.com",
        TICKETD_REDIS_URL=redis_url,
    )
    result = revoke(
        "user-7", "--except-session", "keep-me", "--reason", "password", env=env, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("revoked kind=subject at=")
    marker = redis_sync.get(f"ticketd:rv:{{{subject_id('user-7')}}}:u")
    assert isinstance(marker, bytes)
    not_before, spared = json.loads(marker)
    assert spared == session_hash("keep-me")
    assert isinstance(not_before, int)
    entries: Any = redis_sync.xrange("ticketd:revocations")
    ((_, fields),) = entries
    assert fields[b"kind"] == b"subject"
    assert fields[b"except"] == session_hash("keep-me").encode()

    integer = revoke("42", "--integer", "--session", "s-1", env=env, cwd=tmp_path)
    assert integer.returncode == 0, integer.stderr
    assert redis_sync.exists(f"ticketd:rv:{{{subject_id(42)}}}:s:{session_hash('s-1')}")


def test_revoke_refuses_bad_input_and_the_embedded_store(tmp_path: Path, redis_url: str) -> None:
    base = {"TICKETD_SESSION_SECRET": SECRET, "TICKETD_ALLOWED_ORIGINS": "https://a.example.com"}
    embedded = revoke("user-7", env=environment(**base), cwd=tmp_path)
    assert embedded.returncode == 2
    assert "TICKETD_REDIS_URL" in embedded.stderr
    env = environment(**base, TICKETD_REDIS_URL=redis_url)
    bad = revoke("user-7", "--connection", "not an id", env=env, cwd=tmp_path)
    assert bad.returncode == 2
    assert "connection must be" in bad.stderr
    both = revoke("user-7", "--session", "a", "--connection", "b", env=env, cwd=tmp_path)
    assert both.returncode == 2  # argparse: mutually exclusive
    not_int = revoke("abc", "--integer", env=env, cwd=tmp_path)
    assert not_int.returncode == 2
