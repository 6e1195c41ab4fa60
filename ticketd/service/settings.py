"""Service configuration: ``TICKETD_*`` variables, validated once at start-up.

Only :func:`load_settings` reads the environment (the CLI calls it); tests and
embedders build :class:`Settings` directly. Every secret may come from a file
named by ``<NAME>_FILE`` (Kubernetes and Docker secrets). Problems are collected
and reported one line each by :class:`ConfigError`, so a bad deployment says
everything that is wrong in one go.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from ..hosts import HostAllowlist, HostPattern
from ..issuer import validate_audience
from ..origins import OriginAllowlist, OriginPattern
from ..webhook import check_url, signing_key
from .redis_url import redis_url_problem
from .secret_strength import weakness

__all__ = [
    "ENV_PREFIX",
    "MIN_SECRET_BYTES",
    "PLACEHOLDER_WORDS",
    "CommaList",
    "ConfigError",
    "Settings",
    "build_settings",
    "load_settings",
]

ENV_PREFIX = "TICKETD_"
MIN_SECRET_BYTES = 32
PLACEHOLDER_WORDS = (
    "changeme",
    "change-me",
    "change_me",
    "placeholder",
    "example",
    "password",
    "insecure",
    "your-secret",
    "xxxxxxxx",
    "notasecret",
)
_RATE = re.compile(r"\s*(\d+)\s*/\s*(second|minute|hour|day)s?\s*")

CommaList = Annotated[list[str], NoDecode]


def _split(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def _check_secret(name: str, value: str) -> None:
    if len(value.encode("utf-8")) < MIN_SECRET_BYTES:
        raise ValueError(f"{name} is shorter than {MIN_SECRET_BYTES} bytes")
    lowered = value.lower()
    if any(word in lowered for word in PLACEHOLDER_WORDS):
        raise ValueError(f"{name} looks like a placeholder; generate a random one")
    problem = weakness(value)  # repeated patterns, sequential or keyboard runs, digit runs
    if problem is not None:
        raise ValueError(f"{name} {problem}")


class Settings(BaseSettings):
    """Every ``TICKETD_*`` variable. Field ``x`` is variable ``TICKETD_X``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    # Redis
    redis_url: str | None = Field(default=None, repr=False)  # may carry a password
    redis_sentinels: CommaList = Field(default_factory=list)
    redis_sentinel_service: str = "mymaster"
    redis_cluster: bool = False
    redis_ca_file: str | None = None
    redis_cert_file: str | None = None
    redis_key_file: str | None = None
    redis_timeout: float = Field(default=0.5, gt=0, le=10)
    store_deadline: float = Field(default=1.0, gt=0, le=30)
    redeem_wait_replicas: int = Field(default=0, ge=0, le=16)
    key_prefix: str = Field(default="ticketd:", min_length=1, max_length=64)

    # Tickets
    ticket_ttl: float = Field(default=30.0, ge=1, le=300)
    audiences: CommaList = Field(default_factory=lambda: ["default"])
    allowed_origins: CommaList = Field(default_factory=list)
    bind_client_ip: bool = False

    # Session cookie
    session_format: Literal["ticketd", "flask", "starlette"] = "ticketd"
    session_cookie: str = Field(default="session", min_length=1, max_length=128)
    session_secret: SecretStr | None = None
    session_secret_fallbacks: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    session_max_age: int = Field(default=14 * 24 * 3600, ge=60, le=400 * 24 * 3600)
    session_subject_key: str = Field(default="user_id", min_length=1)
    session_id_key: str | None = Field(default=None, min_length=1, max_length=128)

    # Service-to-service redeem
    service_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)

    # Replays (ticketd.replay, ticketd.webhook)
    on_replay: Literal["alert", "close_first", "revoke_session"] = "alert"
    replay_grace: float = Field(default=2.0, ge=0, le=60)
    replay_webhook_url: str | None = None
    replay_webhook_secret: SecretStr | None = None

    # Abuse limits
    trusted_proxies: CommaList = Field(default_factory=list)
    rate_limit_per_subject: str = "30/minute"
    rate_limit_per_ip: str = "120/minute"
    max_outstanding_per_subject: int = Field(default=20, ge=0)

    # HTTP server
    allowed_hosts: CommaList = Field(default_factory=list)
    max_header_bytes: int = Field(default=32 * 1024, ge=1024, le=1024 * 1024)
    header_timeout: float = Field(default=10.0, gt=0, le=300)

    # Logs
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "text"] = "json"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Only load_settings() reads the environment; see the module docstring.
        return (init_settings,)

    @field_validator(
        "redis_sentinels",
        "audiences",
        "allowed_origins",
        "allowed_hosts",
        "trusted_proxies",
        "session_secret_fallbacks",
        "service_keys",
        mode="before",
    )
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        return _split(value)

    @field_validator("log_level", "log_format", "session_format", "on_replay", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one allowed origin is required")
        for position, item in enumerate(value, 1):
            try:
                OriginPattern.parse(item)
            except ValueError as exc:  # InvalidOrigin; an origin is not a secret: quote it
                raise ValueError(f"entry {position} {item!r}: {exc}") from None
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        for item in value:
            HostPattern.parse(item)  # ValueError says what is wrong
        return value

    @field_validator("audiences")
    @classmethod
    def _audiences(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one audience is required")
        for item in value:
            validate_audience(item)  # the same rule the issuer applies at mint
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or CIDR network") from None
        return value

    @field_validator("redis_sentinels")
    @classmethod
    def _sentinels(cls, value: list[str]) -> list[str]:
        for item in value:
            host, sep, port = item.rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"{item!r} is not host:port")
        return value

    @field_validator("rate_limit_per_subject", "rate_limit_per_ip")
    @classmethod
    def _rate(cls, value: str) -> str:
        if value.strip() == "0":
            return "0"
        match = _RATE.fullmatch(value)
        if not match:
            raise ValueError("must look like '30/minute' (or 0 to disable)")
        if int(match[1]) == 0:
            raise ValueError(
                f"{value.strip()!r} would refuse every mint; set 0 to turn the limit off"
            )
        return value.strip()

    @field_validator("replay_webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        if value is not None:
            check_url(value)  # http(s), a host, a valid port, no credentials
        return value

    @field_validator("replay_webhook_secret")
    @classmethod
    def _webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            signing_key(value.get_secret_value())  # ValueError names the form, not the value
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        problem = redis_url_problem(value) if value is not None else None
        if problem is not None:  # never the URL itself: it may carry a password
            raise ValueError(problem)
        return value

    @field_validator("session_secret")
    @classmethod
    def _session_secret(cls, value: SecretStr | None) -> SecretStr:
        if value is None:
            raise ValueError("is required")
        _check_secret("the session secret", value.get_secret_value())
        return value

    @field_validator("session_secret_fallbacks")
    @classmethod
    def _fallbacks(cls, value: list[SecretStr]) -> list[SecretStr]:
        for item in value:
            _check_secret("a fallback secret", item.get_secret_value())
        return value

    @field_validator("service_keys")
    @classmethod
    def _service_keys(cls, value: list[SecretStr]) -> list[SecretStr]:
        for item in value:
            _check_secret("a service key", item.get_secret_value())
        return value

    @model_validator(mode="after")
    def _topology(self) -> Settings:
        if self.redis_cluster and self.redis_sentinels:
            raise ValueError(
                f"{ENV_PREFIX}REDIS_CLUSTER: cannot be combined with {ENV_PREFIX}REDIS_SENTINELS"
            )
        if (self.replay_webhook_url is None) != (self.replay_webhook_secret is None):
            raise ValueError(
                f"{ENV_PREFIX}REPLAY_WEBHOOK_URL: needs {ENV_PREFIX}REPLAY_WEBHOOK_SECRET"
                " and the other way round (the webhook is signed)"
            )
        if (self.redis_cluster or self.redis_sentinels) and self.redis_url is None:
            raise ValueError(
                f"{ENV_PREFIX}REDIS_URL: Cluster and Sentinel need it (credentials, TLS, db)"
            )
        return self

    @property
    def embedded(self) -> bool:
        """No Redis configured: run on the in-process store (development only)."""
        return self.redis_url is None

    def allowlist(self) -> OriginAllowlist:
        return OriginAllowlist(self.allowed_origins)

    def host_allowlist(self) -> HostAllowlist:
        return HostAllowlist(self.allowed_hosts)


class ConfigError(Exception):
    """Invalid configuration; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _describe(error: ValidationError) -> list[str]:
    lines = []
    for item in error.errors():
        message = str(item["msg"]).removeprefix("Value error, ")
        if item["loc"]:
            lines.append(f"{ENV_PREFIX}{str(item['loc'][0]).upper()}: {message}")
        else:  # model-level checks name their variable first, like every other line
            lines.append(message)
    return lines


def build_settings(values: Mapping[str, Any]) -> Settings:
    """Validate ``values`` (field names) into :class:`Settings` or raise :class:`ConfigError`."""
    try:
        return Settings(**values)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read ``TICKETD_*`` (and ``TICKETD_*_FILE``) from ``environ`` (default: the process)."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    problems: list[str] = []
    unread: set[str] = set()  # fields whose _FILE failed: already reported once
    known = set(Settings.model_fields)
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        field = name[len(ENV_PREFIX) :].lower()
        if field.endswith("_file") and field.removesuffix("_file") in known:
            field = field.removesuffix("_file")
            if f"{ENV_PREFIX}{field.upper()}" in environ:
                problems.append(f"{name}: set either {ENV_PREFIX}{field.upper()} or {name}")
                continue
            try:
                value = Path(value).read_text(encoding="utf-8").strip()
            except OSError as exc:
                problems.append(f"{name}: cannot read the file ({exc.strerror})")
                unread.add(f"{ENV_PREFIX}{field.upper()}:")
                continue
        if field in known:
            values[field] = value
    try:
        settings = build_settings(values)
    except ConfigError as exc:
        # Not also "TICKETD_X: is required" after "TICKETD_X_FILE: cannot read the file".
        problems.extend(p for p in exc.problems if not p.startswith(tuple(unread)))
    if problems:
        raise ConfigError(problems)
    return settings
