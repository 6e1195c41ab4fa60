"""Service settings: valid values, one ConfigError line per problem, environment loading."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from ticketd.service.settings import ConfigError, Settings, build_settings, load_settings

# Obviously fake, but they pass the service's secret checks.
SECRET = "test-only-key-0123456789abcdefghijklmn"
FALLBACK = "test-only-old-key-0123456789abcdefghij"
SERVICE_KEY = "test-only-service-key-0123456789abcdef"
REDIS_PASSWORD = "test-only-redis-pw-0123456789"
ORIGIN = "https://app.example.com"

MINIMAL: dict[str, Any] = {"session_secret": SECRET, "allowed_origins": ORIGIN}
ENV_MINIMAL = {"TICKETD_SESSION_SECRET": SECRET, "TICKETD_ALLOWED_ORIGINS": ORIGIN}


def problems(values: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        build_settings(values)
    return checked(info.value)


def env_problems(environ: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_settings(environ)
    return checked(info.value)


def checked(error: ConfigError) -> list[str]:
    assert error.problems
    assert str(error) == "\n".join(error.problems)
    for line in error.problems:
        assert line.startswith("TICKETD_"), line
        assert "\n" not in line
        name = line.split(":", 1)[0]
        assert name == name.upper()
        assert " " not in name
    return error.problems


# -- valid --------------------------------------------------------------------------------


def test_minimal_valid() -> None:
    settings = build_settings(MINIMAL)
    assert isinstance(settings.session_secret, SecretStr)
    assert settings.session_secret.get_secret_value() == SECRET
    assert settings.allowed_origins == [ORIGIN]
    assert settings.allowlist().check(ORIGIN) == ORIGIN
    assert settings.embedded is True
    assert settings.redis_url is None
    assert settings.audiences == ["default"]
    assert settings.ticket_ttl == 30.0
    assert settings.session_format == "ticketd"
    assert settings.session_cookie == "session"
    assert settings.session_subject_key == "user_id"
    assert settings.session_secret_fallbacks == []
    assert settings.trusted_proxies == []
    assert settings.rate_limit_per_subject == "30/minute"


def test_full_valid() -> None:
    settings = build_settings(
        {
            **MINIMAL,
            "allowed_origins": "https://app.example.com, https://*.example.org",
            "redis_url": "rediss://redis.internal:6380/0",
            "redis_sentinels": "s1:26379, s2:26379",
            "ticket_ttl": "300",
            "session_format": "FLASK",
            "session_secret_fallbacks": FALLBACK,
            "service_keys": SERVICE_KEY,
            "trusted_proxies": "10.0.0.0/8, 192.168.1.1, ::1",
            "rate_limit_per_ip": " 5 / seconds ",
            "rate_limit_per_subject": "0",
            "log_level": "DEBUG",
        }
    )
    assert settings.embedded is False
    assert settings.allowed_origins == ["https://app.example.com", "https://*.example.org"]
    assert settings.redis_sentinels == ["s1:26379", "s2:26379"]
    assert settings.ticket_ttl == 300.0
    assert settings.session_format == "flask"
    assert [s.get_secret_value() for s in settings.session_secret_fallbacks] == [FALLBACK]
    assert [s.get_secret_value() for s in settings.service_keys] == [SERVICE_KEY]
    assert settings.trusted_proxies == ["10.0.0.0/8", "192.168.1.1", "::1"]
    assert settings.rate_limit_per_ip == "5 / seconds"
    assert settings.rate_limit_per_subject == "0"
    assert settings.log_level == "debug"


def test_ttl_bounds_are_inclusive() -> None:
    assert build_settings({**MINIMAL, "ticket_ttl": 1}).ticket_ttl == 1.0
    assert build_settings({**MINIMAL, "ticket_ttl": 300}).ticket_ttl == 300.0


def test_settings_are_frozen() -> None:
    settings = build_settings(MINIMAL)
    with pytest.raises(ValueError, match="frozen"):
        settings.ticket_ttl = 5


# -- refusals -------------------------------------------------------------------------------


def test_missing_session_secret() -> None:
    assert problems({"allowed_origins": ORIGIN}) == ["TICKETD_SESSION_SECRET: is required"]


def test_short_secret() -> None:
    assert problems({**MINIMAL, "session_secret": SECRET[:31]}) == [
        "TICKETD_SESSION_SECRET: the session secret is shorter than 32 bytes"
    ]
    assert build_settings({**MINIMAL, "session_secret": SECRET[:32]}).session_secret is not None


@pytest.mark.parametrize(
    "secret",
    [
        "changeme".ljust(40, "-") + "",
        "changeme-0123456789abcdefghijklmnopqrstu",
        "CHANGE_ME-0123456789abcdefghijklmnopqrst",
        "0123456789abcdefghijklmnopqrst-PlaceHolder",
        "0123456789abcdefghijklmnopqrst-your-secret",
        "0123456789abcdefghijklmnopqrst-notasecret",
        "0123456789abcdefghijklmnopqrst-insecure",
        "0123456789abcdefghijklmnopqrst-password",
        "0123456789abcdefghijklmnopqrst-example",
    ],
)
def test_placeholder_secret(secret: str) -> None:
    assert len(secret) >= 32
    assert problems({**MINIMAL, "session_secret": secret}) == [
        "TICKETD_SESSION_SECRET: the session secret looks like a placeholder; generate a random one"
    ]


def test_secret_with_too_few_distinct_characters() -> None:
    assert problems({**MINIMAL, "session_secret": "abcdefg" * 6}) == [
        "TICKETD_SESSION_SECRET: the session secret has too few distinct characters"
    ]
    assert build_settings({**MINIMAL, "session_secret": "k3X9-pQz7_Lm2vBn8wRt4yHs6JdF0cGe"})


def test_bad_fallback_and_service_key() -> None:
    assert problems({**MINIMAL, "session_secret_fallbacks": f"{FALLBACK}, short"}) == [
        "TICKETD_SESSION_SECRET_FALLBACKS: a fallback secret is shorter than 32 bytes"
    ]
    assert problems({**MINIMAL, "service_keys": "changeme-0123456789abcdefghijklmnopqrstu"}) == [
        "TICKETD_SERVICE_KEYS: a service key looks like a placeholder; generate a random one"
    ]


@pytest.mark.parametrize("value", [None, "", " , ", []])
def test_empty_allowlist(value: object) -> None:
    values = {"session_secret": SECRET}
    if value is not None:
        values["allowed_origins"] = value  # type: ignore[assignment]
    assert problems(values) == ["TICKETD_ALLOWED_ORIGINS: at least one allowed origin is required"]


@pytest.mark.parametrize(
    ("origin", "message"),
    [
        ("https://a.example.com/path", "origin must be scheme://host[:port] with nothing else"),
        ("null", "opaque origin 'null' is not allowed"),
        ("https://*.*.example.com", "a wildcard may only stand for the first label"),
        ("http://a.example.com:99999", "origin port is out of range"),
    ],
)
def test_invalid_origin(origin: str, message: str) -> None:
    assert problems({**MINIMAL, "allowed_origins": f"{ORIGIN}, {origin}"}) == [
        f"TICKETD_ALLOWED_ORIGINS: entry 2 {origin!r}: {message}"  # which one, quoted
    ]


@pytest.mark.parametrize(
    ("ttl", "message"),
    [
        (0, "Input should be greater than or equal to 1"),
        ("0.5", "Input should be greater than or equal to 1"),
        (301, "Input should be less than or equal to 300"),
        ("soon", "Input should be a valid number, unable to parse string as a number"),
    ],
)
def test_ttl_out_of_range(ttl: object, message: str) -> None:
    assert problems({**MINIMAL, "ticket_ttl": ttl}) == [f"TICKETD_TICKET_TTL: {message}"]


@pytest.mark.parametrize("rate", ["5 per minute", "five/minute", "5/fortnight", "/minute", ""])
def test_bad_rate(rate: str) -> None:
    assert problems({**MINIMAL, "rate_limit_per_subject": rate}) == [
        "TICKETD_RATE_LIMIT_PER_SUBJECT: must look like '30/minute' (or 0 to disable)"
    ]


@pytest.mark.parametrize("rate", ["0/minute", " 00 / seconds "])
def test_a_rate_of_zero_is_refused_not_read_as_off(rate: str) -> None:
    assert problems({**MINIMAL, "rate_limit_per_ip": rate}) == [
        f"TICKETD_RATE_LIMIT_PER_IP: {rate.strip()!r} would refuse every mint; "
        "set 0 to turn the limit off"
    ]


@pytest.mark.parametrize("proxy", ["10.0.0.0/33", "not-an-ip", "10.0.0.256"])
def test_bad_proxy(proxy: str) -> None:
    assert problems({**MINIMAL, "trusted_proxies": f"10.0.0.1, {proxy}"}) == [
        f"TICKETD_TRUSTED_PROXIES: {proxy!r} is not an IP address or CIDR network"
    ]


@pytest.mark.parametrize("url", ["http://redis:6379", "https://redis", "redis.internal:6379"])
def test_bad_redis_url(url: str) -> None:
    assert problems({**MINIMAL, "redis_url": url}) == [
        "TICKETD_REDIS_URL: must start with redis://, rediss:// or unix://"
    ]


def test_bad_sentinel() -> None:
    assert problems({**MINIMAL, "redis_url": "redis://r", "redis_sentinels": "s1"}) == [
        "TICKETD_REDIS_SENTINELS: 's1' is not host:port"
    ]


def test_cluster_and_sentinels_together() -> None:
    values = {**MINIMAL, "redis_url": "redis://r", "redis_cluster": True}
    assert problems({**values, "redis_sentinels": "s1:26379"}) == [
        "TICKETD_REDIS_CLUSTER: cannot be combined with TICKETD_REDIS_SENTINELS"
    ]
    assert build_settings(values).redis_cluster is True


def test_cluster_without_redis_url() -> None:
    assert problems({**MINIMAL, "redis_cluster": True}) == [
        "TICKETD_REDIS_URL: Cluster and Sentinel need it (credentials, TLS, db)"
    ]


def test_several_problems_several_lines() -> None:
    lines = problems(
        {
            "session_secret": "short",
            "allowed_origins": "null",
            "ticket_ttl": 0,
            "redis_url": "http://r",
            "trusted_proxies": "nope",
            "rate_limit_per_ip": "lots",
        }
    )
    assert sorted(lines) == [
        "TICKETD_ALLOWED_ORIGINS: entry 1 'null': opaque origin 'null' is not allowed",
        "TICKETD_RATE_LIMIT_PER_IP: must look like '30/minute' (or 0 to disable)",
        "TICKETD_REDIS_URL: must start with redis://, rediss:// or unix://",
        "TICKETD_SESSION_SECRET: the session secret is shorter than 32 bytes",
        "TICKETD_TICKET_TTL: Input should be greater than or equal to 1",
        "TICKETD_TRUSTED_PROXIES: 'nope' is not an IP address or CIDR network",
    ]


def test_settings_does_not_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKETD_ALLOWED_ORIGINS", ORIGIN)
    monkeypatch.setenv("TICKETD_TICKET_TTL", "5")
    assert problems({"session_secret": SECRET}) == [
        "TICKETD_ALLOWED_ORIGINS: at least one allowed origin is required"
    ]
    assert Settings(**MINIMAL).ticket_ttl == 30.0


# -- load_settings -----------------------------------------------------------------------------


def test_load_minimal() -> None:
    settings = load_settings(ENV_MINIMAL)
    assert settings.session_secret is not None
    assert settings.session_secret.get_secret_value() == SECRET
    assert settings.allowed_origins == [ORIGIN]


def test_load_secret_from_file(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text(f"  {SECRET}\n\n", encoding="utf-8")
    settings = load_settings(
        {"TICKETD_SESSION_SECRET_FILE": str(path), "TICKETD_ALLOWED_ORIGINS": ORIGIN}
    )
    assert settings.session_secret is not None
    assert settings.session_secret.get_secret_value() == SECRET


def test_load_list_from_file(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"{SERVICE_KEY},{FALLBACK}\n", encoding="utf-8")
    settings = load_settings({**ENV_MINIMAL, "TICKETD_SERVICE_KEYS_FILE": str(path)})
    assert [k.get_secret_value() for k in settings.service_keys] == [SERVICE_KEY, FALLBACK]


def test_load_secret_file_checked_like_a_value(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("short\n", encoding="utf-8")
    assert env_problems(
        {"TICKETD_SESSION_SECRET_FILE": str(path), "TICKETD_ALLOWED_ORIGINS": ORIGIN}
    ) == ["TICKETD_SESSION_SECRET: the session secret is shorter than 32 bytes"]


def test_load_secret_file_missing(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    assert env_problems(
        {"TICKETD_SESSION_SECRET_FILE": str(missing), "TICKETD_ALLOWED_ORIGINS": ORIGIN}
    ) == ["TICKETD_SESSION_SECRET_FILE: cannot read the file (No such file or directory)"]


def test_load_secret_file_is_a_directory(tmp_path: Path) -> None:
    assert env_problems({**ENV_MINIMAL, "TICKETD_SERVICE_KEYS_FILE": str(tmp_path)}) == [
        "TICKETD_SERVICE_KEYS_FILE: cannot read the file (Is a directory)"
    ]


def test_load_value_and_file_both_set(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text(SECRET, encoding="utf-8")
    assert env_problems({**ENV_MINIMAL, "TICKETD_SESSION_SECRET_FILE": str(path)}) == [
        "TICKETD_SESSION_SECRET_FILE: set either TICKETD_SESSION_SECRET "
        "or TICKETD_SESSION_SECRET_FILE"
    ]


def test_load_comma_lists_with_spaces() -> None:
    settings = load_settings(
        {
            **ENV_MINIMAL,
            "TICKETD_ALLOWED_ORIGINS": " https://a.example.com ,https://b.example.com:8443 , ",
            "TICKETD_AUDIENCES": "chat ,  feed",
            "TICKETD_TRUSTED_PROXIES": "10.0.0.0/8 , fd00::/8",
            "TICKETD_SESSION_SECRET_FALLBACKS": f" {FALLBACK} , ",
        }
    )
    assert settings.allowed_origins == ["https://a.example.com", "https://b.example.com:8443"]
    assert settings.audiences == ["chat", "feed"]
    assert settings.trusted_proxies == ["10.0.0.0/8", "fd00::/8"]
    assert [s.get_secret_value() for s in settings.session_secret_fallbacks] == [FALLBACK]


def test_load_scalars_from_strings() -> None:
    settings = load_settings(
        {
            **ENV_MINIMAL,
            "TICKETD_TICKET_TTL": "12.5",
            "TICKETD_REDIS_CLUSTER": "true",
            "TICKETD_REDIS_URL": "redis://r:6379",
            "TICKETD_BIND_CLIENT_IP": "1",
            "TICKETD_SESSION_FORMAT": "Starlette",
        }
    )
    assert settings.ticket_ttl == 12.5
    assert settings.redis_cluster is True
    assert settings.bind_client_ip is True
    assert settings.session_format == "starlette"


def test_load_ignores_unknown_and_foreign_variables(tmp_path: Path) -> None:
    settings = load_settings(
        {
            **ENV_MINIMAL,
            "TICKETD_NO_SUCH_THING": "whatever",
            "TICKETD_NO_SUCH_THING_FILE": str(tmp_path / "missing"),
            "TICKETD_": "x",
            "ticketd_ticket_ttl": "0",
            "TICKET_TTL": "0",
            "SESSION_SECRET": "short",
        }
    )
    assert settings.ticket_ttl == 30.0
    assert settings.session_secret is not None
    assert settings.session_secret.get_secret_value() == SECRET


def test_load_reports_variable_names() -> None:
    assert env_problems({**ENV_MINIMAL, "TICKETD_TICKET_TTL": "0"}) == [
        "TICKETD_TICKET_TTL: Input should be greater than or equal to 1"
    ]


def test_load_given_a_mapping_ignores_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKETD_SESSION_SECRET", "short")
    monkeypatch.setenv("TICKETD_TICKET_TTL", "0")
    monkeypatch.setenv("TICKETD_ALLOWED_ORIGINS", "null")
    settings = load_settings(ENV_MINIMAL)
    assert settings.ticket_ttl == 30.0
    assert settings.allowed_origins == [ORIGIN]
    # Without a mapping it does read the process environment.
    assert sorted(env_problems_from_process()) == [
        "TICKETD_ALLOWED_ORIGINS: entry 1 'null': opaque origin 'null' is not allowed",
        "TICKETD_SESSION_SECRET: the session secret is shorter than 32 bytes",
        "TICKETD_TICKET_TTL: Input should be greater than or equal to 1",
    ]


def env_problems_from_process() -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_settings()
    return checked(info.value)


def test_load_empty_mapping() -> None:
    assert sorted(env_problems({})) == [
        "TICKETD_ALLOWED_ORIGINS: at least one allowed origin is required",
        "TICKETD_SESSION_SECRET: is required",
    ]


# -- secrets never shown -------------------------------------------------------------------------


def test_repr_and_str_hide_secrets() -> None:
    settings = build_settings(
        {
            **MINIMAL,
            "session_secret_fallbacks": FALLBACK,
            "service_keys": SERVICE_KEY,
            "redis_url": f"redis://ticketd:{REDIS_PASSWORD}@redis:6379/0",
        }
    )
    for text in (repr(settings), str(settings), f"{settings}"):
        for secret in (SECRET, FALLBACK, SERVICE_KEY, REDIS_PASSWORD):
            assert secret not in text
    for secret in (SECRET, FALLBACK, SERVICE_KEY):
        assert secret not in settings.model_dump_json()
    assert "**********" in repr(settings)
    assert "allowed_origins=['https://app.example.com']" in repr(settings)


def test_config_error_hides_secrets() -> None:
    placeholder = "changeme-0123456789abcdefghijklmnopqrstu"
    with pytest.raises(ConfigError) as info:
        build_settings(
            {
                "session_secret": placeholder,
                "allowed_origins": ORIGIN,
                "service_keys": f"{SERVICE_KEY},short-key-value",
                "redis_url": f"http://ticketd:{REDIS_PASSWORD}@redis",
            }
        )
    text = str(info.value)
    assert len(info.value.problems) == 3
    for secret in (placeholder, SERVICE_KEY, "short-key-value", REDIS_PASSWORD):
        assert secret not in text


@pytest.mark.parametrize(
    ("audience", "message"),
    [
        ("a" * 129, "audience must be a string of 1 to 128 characters"),
        ("chat\x00", "audience must not contain control characters"),
    ],
)
def test_bad_audience_refused_at_start(audience: str, message: str) -> None:
    assert problems({**MINIMAL, "audiences": f"chat,{audience}"}) == [
        f"TICKETD_AUDIENCES: {message}"
    ]


def test_replay_settings_load_from_the_environment() -> None:
    hook_secret = "whsec_" + "a2V5LWtleS1rZXkta2V5LWtleS1rZXkta2V5LWtleQ=="
    settings = load_settings(
        {
            **ENV_MINIMAL,
            "TICKETD_ON_REPLAY": "Close_First",
            "TICKETD_REPLAY_GRACE": "0.5",
            "TICKETD_REPLAY_WEBHOOK_URL": "https://hooks.example.com/ticketd",
            "TICKETD_REPLAY_WEBHOOK_SECRET": hook_secret,
        }
    )
    assert (settings.on_replay, settings.replay_grace) == ("close_first", 0.5)
    assert settings.replay_webhook_secret is not None
    assert hook_secret not in repr(settings)
    assert load_settings(ENV_MINIMAL).on_replay == "alert"  # the default


@pytest.mark.parametrize(
    ("values", "line"),
    [
        ({"TICKETD_ON_REPLAY": "revoke"}, "TICKETD_ON_REPLAY: Input should be 'alert',"),
        ({"TICKETD_REPLAY_GRACE": "-1"}, "TICKETD_REPLAY_GRACE: Input should be greater"),
        (
            {"TICKETD_REPLAY_WEBHOOK_URL": "https://hooks.example.com/x"},
            "TICKETD_REPLAY_WEBHOOK_URL: needs TICKETD_REPLAY_WEBHOOK_SECRET",
        ),
        (
            {
                "TICKETD_REPLAY_WEBHOOK_URL": "ftp://hooks.example.com/x",
                "TICKETD_REPLAY_WEBHOOK_SECRET": "whsec_" + "a" * 40,
            },
            "TICKETD_REPLAY_WEBHOOK_URL: the webhook URL must be http:// or https://",
        ),
        (
            {
                "TICKETD_REPLAY_WEBHOOK_URL": "https://user:hunter2-pass@hooks.example.com/x",
                "TICKETD_REPLAY_WEBHOOK_SECRET": "whsec_" + "a" * 40,
            },
            "TICKETD_REPLAY_WEBHOOK_URL: the webhook URL must not hold credentials",
        ),
        (
            {
                "TICKETD_REPLAY_WEBHOOK_URL": "http:///no-host",
                "TICKETD_REPLAY_WEBHOOK_SECRET": "whsec_" + "a" * 40,
            },
            "TICKETD_REPLAY_WEBHOOK_URL: the webhook URL has no host",
        ),
        (
            {
                "TICKETD_REPLAY_WEBHOOK_URL": "https://hooks.example.com:99999/x",
                "TICKETD_REPLAY_WEBHOOK_SECRET": "whsec_" + "a" * 40,
            },
            "TICKETD_REPLAY_WEBHOOK_URL: the webhook URL has an invalid port",
        ),
        (
            {
                "TICKETD_REPLAY_WEBHOOK_URL": "https://hooks.example.com/x",
                "TICKETD_REPLAY_WEBHOOK_SECRET": "not-a-standard-webhooks-secret",
            },
            "TICKETD_REPLAY_WEBHOOK_SECRET: a webhook secret has the form whsec_<base64>",
        ),
    ],
)
def test_bad_replay_settings(values: dict[str, str], line: str) -> None:
    found = env_problems({**ENV_MINIMAL, **values})
    assert any(p.startswith(line) for p in found), found
    assert "not-a-standard-webhooks-secret" not in "\n".join(found)
    assert "hunter2-pass" not in "\n".join(found)
