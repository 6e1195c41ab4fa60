"""Weak secrets and bad Redis URLs are configuration errors: one line, exit 2, no secret.

Each case is checked in-process (settings) and, for a few, through the real
``ticketd check-config`` and ``ticketd serve`` in a subprocess.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import environment, ticketd
from ticketd.service.secret_strength import MIN_SECRET_BITS, estimated_bits, weakness
from ticketd.service.settings import ConfigError, build_settings

SECRET = "test-only-key-0123456789abcdefghijklmn"
ORIGIN = "https://app.example.com"
PASSWORD = "test-only-pw-Zq8vN3"
MINIMAL: dict[str, Any] = {"session_secret": SECRET, "allowed_origins": ORIGIN}

# -- weak secrets -----------------------------------------------------------------------

WEAK = {
    "a short pattern repeated": "abcdefgh" * 4,
    "a pattern repeated, mixed case": "AbCdEfGh" * 4,
    "hex words repeated": "c0ffee42deadbeef" * 2,
    "a timestamp repeated": "20240131T235959Z" * 2,
    "a digit run": "0123456789" * 4,
    "digits only": "31415926535897932384626433832795",
    "an alphabet run": "abcdefghijklmnopqrstuvwxyzABCDEF",
    "a descending run": "zyxwvutsrqponmlkjihgfedcba987654",
    "a run in steps of two": "acegikmoqsuwy02468acegikmoqsuwy0",
    "keyboard rows": "qwertyuiopasdfghjklzxcvbnm123456",
    "keyboard columns": "1q2w3e4r5t6y7u8i9o0p1q2w3e4r5t6y",
    "a counter in a pattern": "abc1-abc2-abc3-abc4-abc5-abc6-abc7-abc8",
    "a word with a counter": "user1234user1235user1236user1237",
    "a phrase repeated": "Tr0ub4dor&3Tr0ub4dor&3Tr0ub4dor&3",
    "symbols repeated": "!@#$%^&*()!@#$%^&*()!@#$%^&*()!@",
    "blocks of one character": "aaaaaaaabbbbbbbbccccccccdddddddd1234",
}


@pytest.mark.parametrize("secret", list(WEAK.values()), ids=list(WEAK))
def test_weak_secret_refused(secret: str) -> None:
    """Each passed the length, placeholder and distinct-character checks before."""
    assert len(secret) >= 32
    assert len(set(secret)) >= 8
    with pytest.raises(ConfigError) as info:
        build_settings({**MINIMAL, "session_secret": secret})
    assert info.value.problems == [
        "TICKETD_SESSION_SECRET: the session secret is too predictable (a repeated pattern, "
        "a sequential or keyboard run, or too few kinds of characters); generate a random one"
    ]
    assert secret not in str(info.value)


@pytest.mark.parametrize("field", ["service_keys", "session_secret_fallbacks"])
def test_weak_keys_refused_everywhere(field: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_settings({**MINIMAL, field: "abcdefgh" * 4})
    assert info.value.problems[0].startswith(f"TICKETD_{field.upper()}:")


def test_generated_secrets_pass() -> None:
    """The control: what the README tells operators to run is never refused."""
    for _ in range(300):
        for value in (secrets.token_urlsafe(32), secrets.token_hex(16)):
            assert weakness(value) is None, value
    assert estimated_bits(secrets.token_urlsafe(32)) > 2 * MIN_SECRET_BITS


# -- bad Redis URLs -----------------------------------------------------------------------

BAD_URLS = {
    "port out of range": (f"redis://:{PASSWORD}@127.0.0.1:99999/0", "the port must be"),
    "port not a number": (f"redis://:{PASSWORD}@127.0.0.1:63a9/0", "the port must be"),
    "port zero": (f"redis://:{PASSWORD}@127.0.0.1:0/0", "the port must be"),
    "no host": (f"redis://:{PASSWORD}@:6379/0", "the host is missing"),
    "host with a space": (f"redis://:{PASSWORD}@red is:6379/0", "the host is missing"),
    "database not a number": (f"redis://:{PASSWORD}@127.0.0.1:6379/zero", "database number"),
    "two path segments": (f"redis://:{PASSWORD}@127.0.0.1:6379/0/1", "database number"),
    "unknown option": (f"redis://:{PASSWORD}@127.0.0.1:6379/0?sockettimeout=1", "unknown option"),
    "bad option value": (f"redis://:{PASSWORD}@127.0.0.1/0?socket_timeout=soon", "invalid value"),
    "TLS option without TLS": (f"redis://:{PASSWORD}@h/0?ssl_certfile=/c", "unknown option"),
    "bad scheme": (f"http://:{PASSWORD}@127.0.0.1:6379/0", "must start with"),
    "upper-case scheme": (f"REDIS://:{PASSWORD}@127.0.0.1:6379/0", "must start with"),
    "unix without a path": ("unix://", "needs the socket's path"),
}


@pytest.mark.parametrize(("url", "expected"), list(BAD_URLS.values()), ids=list(BAD_URLS))
def test_bad_redis_url_is_one_line_without_the_password(url: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_settings({**MINIMAL, "redis_url": url})
    (line,) = info.value.problems
    assert line.startswith("TICKETD_REDIS_URL: ")
    assert expected in line
    assert PASSWORD not in line


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "redis://redis_1:6379",
        "redis://[::1]:6379/15",
        f"rediss://app:{PASSWORD}@redis.internal:6380/1?ssl_cert_reqs=required",
        "unix:///run/redis.sock?db=2",
        "redis://h/0?socket_timeout=0.5&health_check_interval=10",
    ],
)
def test_good_redis_urls_pass(url: str) -> None:
    assert build_settings({**MINIMAL, "redis_url": url}).redis_url == url


@pytest.mark.parametrize("command", [["check-config"], ["serve", "--port", "1"]])
@pytest.mark.parametrize(
    "url",
    [BAD_URLS["port out of range"][0], BAD_URLS["unknown option"][0], BAD_URLS["no host"][0]],
)
def test_cli_says_one_line_and_exits_2(tmp_path: Path, command: list[str], url: str) -> None:
    env = environment(
        TICKETD_REDIS_URL=url, TICKETD_SESSION_SECRET=SECRET, TICKETD_ALLOWED_ORIGINS=ORIGIN
    )
    result = ticketd(*command, env=env, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ticketd: configuration error: TICKETD_REDIS_URL: ")
    assert "Traceback" not in result.stderr
    assert PASSWORD not in result.stderr + result.stdout


def test_cli_refuses_a_weak_secret(tmp_path: Path) -> None:
    env = environment(TICKETD_SESSION_SECRET="c0ffee42deadbeef" * 2, TICKETD_ALLOWED_ORIGINS=ORIGIN)
    result = ticketd("check-config", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "TICKETD_SESSION_SECRET: the session secret is too predictable" in result.stderr
    assert "c0ffee42" not in result.stderr
