"""The listener when the Broker API refuses its credentials (HTTP 401/403): say so once, clearly, and wait.

Nothing can be read with a wrong key or secret, so retrying every few seconds only floods the logs.
Instead: one error line naming the variables to check, the ``settlekeeper_broker_auth_failures_total``
counter and the ``settlekeeper_broker_credentials_ok`` gauge, a critical ``broker_auth`` alert, ``/readyz``
false (the pod leaves the Service, Kubernetes shows it), and the next try after
``SETTLEKEEPER_AUTH_RETRY_SECONDS`` (a key Alpaca re-enables works again without a restart; a new secret
needs one, as settings are read at start-up). When a later try is accepted, the gauge, the readiness and the
alert recover.
"""

from __future__ import annotations

import asyncio

import redis
import redis.asyncio as aioredis
import structlog

from config.settings import Settings
from funding.alerts import Alert, Severity
from funding.errors import CREDENTIALS_HINT, AuthenticationError
from jobs.registry import enqueue_alert_deliveries
from store.alert_state import raise_alert, resolve_alert
from worker.health import Health
from worker.listener_metrics import ListenerMetrics

log = structlog.get_logger(__name__)

DEDUP_KEY = "broker-auth"


class Credentials:
    def __init__(
        self,
        settings: Settings,
        client: aioredis.Redis,
        rq_connection: redis.Redis,
        metrics: ListenerMetrics,
        health: Health,
    ) -> None:
        self.settings = settings
        self.redis = client
        self.rq = rq_connection
        self.metrics = metrics
        self.health = health
        self.refusals = 0
        """Refusals in a row (0 once a call is accepted)."""

    async def refused(self, error: AuthenticationError) -> float:
        """Record a refusal; returns how long to wait before the next try."""
        self.refusals += 1
        self.health.credentials_ok = False
        self.metrics.auth_failures.inc()
        self.metrics.credentials_ok.set(0)
        retry_in = self.settings.auth_retry_seconds
        if self.refusals == 1:
            log.error(
                "broker_credentials_refused", error=str(error), broker=self.settings.broker_url, retry_in=retry_in
            )
        else:
            log.warning("broker_credentials_still_refused", refusals=self.refusals, retry_in=retry_in)
        alert = Alert(
            "broker_auth",
            Severity.CRITICAL,
            DEDUP_KEY,
            f"the Broker API at {self.settings.broker_url} refuses settlekeeper's credentials (HTTP {error.status}): "
            f"nothing is read or settled; {CREDENTIALS_HINT}",
            {"status": str(error.status), "broker_url": self.settings.broker_url},
        )
        await self._move(alert, resolve=False)
        return retry_in

    async def accepted(self) -> None:
        """A call went through: if the credentials had been refused, they work again."""
        self.metrics.credentials_ok.set(1)
        self.health.credentials_ok = True
        if not self.refusals:
            return
        log.info("broker_credentials_accepted", after_refusals=self.refusals)
        self.refusals = 0
        await self._move(Alert("broker_auth", Severity.INFO, DEDUP_KEY, "the Broker API accepts the credentials"), True)

    async def _move(self, alert: Alert, resolve: bool) -> None:
        try:
            change = await (resolve_alert(self.redis, alert) if resolve else raise_alert(self.redis, alert))
            if change is not None:  # the scheduler that flushes deliveries only runs while leading
                await asyncio.to_thread(enqueue_alert_deliveries, self.rq)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("broker_auth_alert_failed", error=type(exc).__name__)
