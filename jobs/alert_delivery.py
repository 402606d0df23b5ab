"""Alert delivery: one recorded state of one alert to Slack and PagerDuty, once per sink.

RQ runs :func:`deliver` for each entry of the alert outbox (:func:`jobs.registry.enqueue_alert_deliveries`)
on its own queue, under a job id derived from (dedup key, incident, state). The state's payload is the
one the state machine recorded (:mod:`funding.alerts`), so a late job sends what was true then. Per sink,
in :data:`~config.settings.ALERT_SINKS` order:

1. not configured (no webhook URL / routing key): skipped, no request;
2. not routed for the severity (``SETTLEKEEPER_ALERT_ROUTES``): skipped. A resolve goes where the
   incident's trigger went, and waits (``RetryableError``) while that trigger has not reached the sink;
3. already there (``sk:alert_sent:...``, written after a 2xx or a refusal), or superseded (a later state
   of the same incident reached the sink: an escalation is never followed by the lower severity, a
   resolve never by a trigger that would reopen): skipped;
4. POST: 2xx → marker; 429 → wait ``Retry-After`` (at most ``SETTLEKEEPER_ALERT_MAX_WAIT_SECONDS``) and
   try again; 5xx or no answer → capped jittered backoff and try again; another 4xx → refused for good:
   logged with the sink's error text, counted, marked, never retried.

A sink still failing after :data:`ATTEMPTS` sends makes the job raise ``RetryableError`` once the other
sinks are done; RQ's ``Retry`` runs it again later and the sinks already marked are not sent again. Only
a crash between a sink's 2xx and its marker can repeat a message (PagerDuty folds it into the same alert by
dedup key). Outcomes are counted by :func:`jobs.job_metrics.count_alert`. Webhook URLs and routing keys are
read from the settings at the call and never logged, raised or stored.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import structlog
from rq import get_current_job

from broker.client import backoff_delay
from config.settings import ALERT_SINKS, Settings
from funding.alerts import Alert, Severity, runbook_url
from funding.errors import RetryableError
from jobs import failpoints
from jobs.job_metrics import count_alert
from jobs.runtime import JobContext, run_job
from store import keys
from store.alert_state import RECORD_TTL_SECONDS
from store.codec import text_map

log = structlog.get_logger(__name__)

ATTEMPTS = 3
"""Sends of one message to one sink within a job; then RQ's Retry (10 s, 30 s, 120 s) takes over."""
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=10, sock_connect=5)
"""One send. Two sinks × 3 attempts × (10 s + a wait of at most 60 s) stay inside RQ's 600 s job timeout."""
TRIGGER_STATES = ("trigger", "escalate-warning", "escalate-critical")
"""The states that open or raise an incident, in order (an escalation is always to a higher severity)."""
LATER_STATES = {state: (*TRIGGER_STATES[i + 1 :], "resolve") for i, state in enumerate(TRIGGER_STATES)}
"""For each trigger state, the states of the same incident that supersede it."""
ICONS = {Severity.INFO: "ℹ️", Severity.WARNING: "⚠️", Severity.CRITICAL: "🚨"}
SLACK_FIELDS_PER_SECTION = 10
"""Block Kit's limit of fields in one section block (and 50 blocks in a message)."""


@dataclass(frozen=True)
class Delivery:
    """One recorded state of incident ``seq`` of an alert: what the sinks are sent."""

    seq: int
    state: str
    alert: Alert
    """The alert as raised (for a resolve: as last triggered)."""
    resolution: Alert | None = None
    """A resolve's own summary and facts (what cleared)."""

    @property
    def event_action(self) -> str:
        return "resolve" if self.state == "resolve" else "trigger"


def deliver(dedup_key: str, seq: int, action: str) -> dict[str, Any]:
    """RQ entry: deliver state ``action`` of incident ``seq`` of alert ``dedup_key`` to every sink."""
    # the label dashboards and rules know this job by (its module was jobs/alerts.py)
    return run_job(lambda ctx: deliver_state(ctx, dedup_key, seq, action), metric_name="alerts.deliver")


async def deliver_state(ctx: JobContext, dedup_key: str, seq: int, state: str) -> dict[str, Any]:
    started = time.monotonic()
    report: dict[str, Any] = {"dedup_key": dedup_key, "seq": seq, "state": state}
    with structlog.contextvars.bound_contextvars(dedup_key=dedup_key, seq=seq, state=state):
        delivery = await _load(ctx, dedup_key, seq, state)
        if delivery is None:  # expired (older than RECORD_TTL_SECONDS), never recorded, or lost by Redis
            if not last_attempt():  # a state lost with Redis' last second is recorded again when raised again
                raise RetryableError(f"alert {dedup_key} incident {seq} {state}: no such state is recorded (yet)")
            log.error("alert_state_missing")
            return {**report, "outcome": "missing"}
        retry: list[str] = []
        async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as http:
            for sink in ALERT_SINKS:
                try:
                    report[sink] = await _deliver_to(ctx, http, delivery, sink)
                except RetryableError as exc:
                    report[sink] = "retry"
                    retry.append(str(exc))
                await count_alert(ctx.redis, delivery.alert.kind, sink, report[sink])
                failpoints.reach(ctx.settings, f"alert.after_{sink}")
        outcomes = {sink: report[sink] for sink in ALERT_SINKS}
        emit = log.warning if retry or "refused" in outcomes.values() else log.info
        emit(
            "alert_delivery",
            kind=delivery.alert.kind,
            severity=delivery.alert.severity.value,
            duration_seconds=round(time.monotonic() - started, 3),
            **outcomes,
        )
    if retry:
        raise RetryableError(f"alert {dedup_key} incident {seq} {state}: " + "; ".join(retry))
    return report


def last_attempt() -> bool:
    """True unless RQ runs this job again after a retryable error (it is the last try, or no RQ job at all)."""
    job = get_current_job()
    return job is None or not job.retries_left


async def _load(ctx: JobContext, dedup_key: str, seq: int, state: str) -> Delivery | None:
    record = text_map(await ctx.redis.hgetall(keys.alert_state(dedup_key, seq, state)))
    if "payload" not in record:
        return None
    resolution = record.get("resolution")
    return Delivery(seq, state, Alert.from_json(record["payload"]), Alert.from_json(resolution) if resolution else None)


def _credential(settings: Settings, sink: str) -> str | None:
    secret = settings.slack_webhook_url if sink == "slack" else settings.pagerduty_routing_key
    return None if secret is None else secret.get_secret_value()


async def _deliver_to(ctx: JobContext, http: aiohttp.ClientSession, delivery: Delivery, sink: str) -> str:
    """Send ``delivery`` to ``sink`` unless it is not due there; returns the outcome."""
    credential = _credential(ctx.settings, sink)
    if credential is None:
        return "unconfigured"
    dedup_key, seq = delivery.alert.dedup_key, delivery.seq
    if delivery.state == "resolve":
        reached = await _trigger_reached(ctx, delivery, sink)
        if reached != "reached":
            if reached == "pending" and not last_attempt():
                raise RetryableError(f"{sink}: the incident's trigger has not reached it yet")
            if reached == "pending":  # its trigger never went out there: there is nothing to resolve
                log.error("alert_trigger_never_sent", sink=sink)
                return "trigger_never_sent"
            return reached
    elif delivery.alert.severity.value not in ctx.settings.routes[sink]:
        return "not_routed"
    marker = keys.alert_sent(dedup_key, seq, delivery.state, sink)
    if await ctx.redis.exists(marker):
        return "already_sent"
    for later in LATER_STATES.get(delivery.state, ()):
        if await ctx.redis.exists(keys.alert_sent(dedup_key, seq, later, sink)):
            return "superseded"
    url, body = _request(ctx.settings, sink, credential, delivery)
    status, detail = await _post(http, sink, url, body, ctx.settings.alert_max_wait_seconds, credential)
    if status >= 300:
        log.error("alert_refused", sink=sink, status=status, error=detail)
        await ctx.redis.set(marker, f"refused {status}", nx=True, ex=RECORD_TTL_SECONDS)
        return "refused"
    await ctx.redis.set(marker, f"sent {status}", nx=True, ex=RECORD_TTL_SECONDS)
    return "sent"


def _request(settings: Settings, sink: str, credential: str, delivery: Delivery) -> tuple[str, dict[str, Any]]:
    """The URL and body that carry ``delivery`` to ``sink``."""
    runbook = runbook_url(settings.runbook_url, delivery.alert.kind)
    if sink == "slack":
        return credential, slack_message(delivery, runbook)
    return settings.pagerduty_url, pagerduty_event(delivery, credential, settings.alert_source, runbook)


async def send_test(settings: Settings, alert: Alert) -> dict[str, tuple[str, str]]:
    """Send ``alert`` to every configured sink now, past routes, markers and the outbox, for ``settlekeeper
    doctor --send-test-alert``; PagerDuty's trigger is resolved at once. Per sink: (outcome, detail), the
    outcome ``sent``, ``unconfigured``, ``refused`` (a 4xx: the sink's text, the credential redacted) or
    ``failed`` (no 2xx after :data:`ATTEMPTS` tries)."""
    found: dict[str, tuple[str, str]] = {}
    async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as http:
        for sink in ALERT_SINKS:
            credential = _credential(settings, sink)
            found[sink] = ("unconfigured", "")
            if credential is None:
                continue
            for state in ("trigger", "resolve") if sink == "pagerduty" else ("trigger",):
                url, body = _request(settings, sink, credential, Delivery(1, state, alert))
                try:
                    wait = min(settings.alert_max_wait_seconds, 5.0)
                    status, detail = await _post(http, sink, url, body, wait, credential)
                except RetryableError as exc:
                    found[sink] = ("failed", str(exc))
                    break
                if status >= 300:
                    found[sink] = ("refused", f"HTTP {status}: {detail[:100]}")
                    break
                found[sink] = ("sent", f"HTTP {status}")
    return found


async def _trigger_reached(ctx: JobContext, delivery: Delivery, sink: str) -> str:
    """Whether a trigger state of the resolved incident reached ``sink``: ``reached``, ``pending`` (one is
    routed there and not sent yet) or ``not_routed`` (none was meant for it: nothing to resolve there)."""
    routed = False
    for state in TRIGGER_STATES:
        raw = await ctx.redis.hget(keys.alert_state(delivery.alert.dedup_key, delivery.seq, state), "payload")
        if raw is None or Alert.from_json(raw).severity.value not in ctx.settings.routes[sink]:
            continue
        routed = True
        if await ctx.redis.exists(keys.alert_sent(delivery.alert.dedup_key, delivery.seq, state, sink)):
            return "reached"
    return "pending" if routed else "not_routed"


async def _post(
    http: aiohttp.ClientSession, sink: str, url: str, body: dict[str, Any], max_wait: float, credential: str
) -> tuple[int, str]:
    """POST ``body`` until a 2xx or a refusal (a status other than 2xx, 429, 5xx): (status, body text).

    The text is read as UTF-8 whatever charset the answer names (``charset=hex`` would make ``resp.text()`` raise
    LookupError), and ``credential`` is redacted from it before it is cut to 300 characters (cut first, a quoted
    credential could survive in part). Raises RetryableError after :data:`ATTEMPTS` answers of 429/5xx or none; its
    message names the sink and the last status only (an aiohttp error's text may carry the URL, which for Slack is
    the credential).
    """
    last = ""
    for attempt in range(1, ATTEMPTS + 1):
        retry_after: float | None = None
        try:
            async with http.post(url, json=body, allow_redirects=False) as resp:
                text = (await resp.read()).decode("utf-8", "replace")
                detail = text.replace(credential, "[redacted]")[:300]
                if resp.status != 429 and resp.status < 500:
                    return resp.status, detail
                last = f"HTTP {resp.status}"
                if resp.status == 429:
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            last = type(exc).__name__
        if attempt == ATTEMPTS:
            break
        wait = min(retry_after, max_wait) if retry_after is not None else backoff_delay(attempt, cap=max_wait)
        log.warning("alert_send_retry", sink=sink, attempt=attempt, error=last, wait_seconds=round(wait, 3))
        await asyncio.sleep(wait)
    raise RetryableError(f"{sink}: {ATTEMPTS} attempts failed, last {last}")


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds from either of its forms (delay-seconds or an HTTP date); None if absent."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:  # "nan" and "inf" are floats too: asyncio.sleep(nan) would never return
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    try:
        return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
    except (TypeError, ValueError, OverflowError):  # OverflowError: a zone offset past C's int
        return None


def _mrkdwn(text: str) -> str:
    """Slack's three control characters, escaped as its formatting rules ask."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _link(runbook: str, kind: str) -> str:
    if runbook.startswith(("http://", "https://")):
        return f"<{runbook}|runbook: {kind}>"
    return _mrkdwn(runbook)  # a path in the repository: shown, not linked


def slack_message(delivery: Delivery, runbook: str) -> dict[str, Any]:
    """An incoming-webhook message: Block Kit blocks and the ``text`` fallback (notifications, screen readers)."""
    alert = delivery.alert
    severity = alert.severity.value.upper()
    if delivery.state == "resolve":
        header, title = f"✅ Resolved · {alert.kind}", f"Resolved: {alert.summary}"
        shown = delivery.resolution
        note = shown.summary if shown is not None and shown.summary != alert.summary else ""
        facts = shown.facts if shown is not None else {}
    else:
        escalated = "Escalated to " if delivery.state.startswith("escalate-") else ""
        header = f"{ICONS[alert.severity]} {escalated}{severity} · {alert.kind}"
        title, note, facts = f"{escalated}{severity}: {alert.summary}", "", alert.facts
    fields = [{"type": "mrkdwn", "text": f"*{_mrkdwn(k)}*\n{_mrkdwn(v)[:1900]}"} for k, v in facts.items()]
    sections = [
        {"type": "section", "fields": fields[i : i + SLACK_FIELDS_PER_SECTION]}
        for i in range(0, len(fields), SLACK_FIELDS_PER_SECTION)
    ][:45]
    summary = _mrkdwn(title) + (f"\n{_mrkdwn(note)}" if note else "")
    context = f"Runbook: {_link(runbook, alert.kind)} · dedup `{_mrkdwn(alert.dedup_key)}` · incident {delivery.seq}"
    return {
        "text": _mrkdwn(f"{title} (runbook: {runbook})"),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": header[:150], "emoji": True}},
            {"type": "section", "text": {"type": "mrkdwn", "text": summary[:3000]}},
            *sections,
            {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
        ],
    }


def pagerduty_event(delivery: Delivery, routing_key: str, source: str, runbook: str) -> dict[str, Any]:
    """An Events API v2 event: a trigger with payload and runbook link, or a resolve by dedup key."""
    alert = delivery.alert
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": delivery.event_action,
        "dedup_key": alert.dedup_key,
    }
    if delivery.event_action == "resolve":
        return event
    event["payload"] = {
        "summary": alert.summary[:1024],
        "source": source,
        "severity": alert.severity.value,
        "class": alert.kind,
        "custom_details": {**alert.facts, "runbook": runbook, "incident": delivery.seq},
    }
    if runbook.startswith(("http://", "https://")):
        event["links"] = [{"href": runbook, "text": "runbook"}]
    return event
