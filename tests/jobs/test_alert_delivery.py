"""Alert delivery (jobs/alert_delivery.py) to local Slack and PagerDuty capture servers, through a real RQ worker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
import time
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
import redis
import structlog
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer

from config.settings import load_settings
from funding.alerts import Alert, Severity, delivery_job_id
from funding.calendar import TradingCalendar
from funding.errors import ConfigError
from jobs.alert_delivery import parse_retry_after
from jobs.failpoints import KILLED_EXIT_STATUS
from jobs.registry import ALERT_QUEUE, JOB_TIMEOUT_SECONDS, enqueue_alert_deliveries, queue
from store import keys
from store.alert_state import Transition, move_sync
from tests.support.jobs import JOB_ENV, RunWorker
from tests.support.sandbox import Sandbox
from tests.support.sinks import ROUTING_KEY, SLACK_PATH, Sinks
from worker.schedule import Scheduler

RUNBOOK = "https://wiki.example.com/settlekeeper/runbook"
DEDUP = "rf-short-2026-11-24"
FACTS = {"deadline": "2026-11-24", "transfers": "4", "amount": "16500.00", "minutes_to_cutoff": "53"}
ROOT = Path(__file__).resolve().parents[2]


def sink_env(sinks: Sinks, **overrides: str) -> dict[str, str]:
    """SETTLEKEEPER_* pointing the alert job at the capture servers (short backoff; a key set to "" is unset)."""
    values = {
        "slack_webhook_url": sinks.slack.url,
        "pagerduty_url": sinks.pagerduty.url,
        "pagerduty_routing_key": ROUTING_KEY,
        "runbook_url": RUNBOOK,
        "alert_max_wait_seconds": "0.05",
        **overrides,
    }
    return {f"SETTLEKEEPER_{name.upper()}": value for name, value in values.items()}


@pytest.fixture
def alert_env(job_env: Callable[..., None], sinks: Sinks, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Point the jobs at the capture servers; call again with overrides (name=value; "" unsets the variable)."""

    def configure(**overrides: str) -> None:
        job_env()
        for name, value in sink_env(sinks, **overrides).items():
            monkeypatch.setenv(name, value)

    configure()
    return configure


def record(
    client: redis.Redis,
    action: str = "trigger",
    severity: str = "critical",
    summary: str = "RF cannot cover 2026-11-24: 4 transfers (16500.00) left unsettled",
    facts: dict[str, str] | None = None,
    dedup: str = DEDUP,
    kind: str = "rf_short",
) -> Transition | None:
    """Move the alert's state as a job or the listener would (the Lua state machine)."""
    alert = Alert(kind, Severity(severity), dedup, summary, FACTS if facts is None else facts)
    return move_sync(client, alert, action)


async def deliver(client: redis.Redis, run_worker: RunWorker) -> None:
    """Enqueue the outbox and run the worker in burst mode."""
    enqueue_alert_deliveries(client)
    await run_worker()


def job(client: redis.Redis, seq: int, state: str, dedup: str = DEDUP) -> Job:
    return Job.fetch(delivery_job_id(dedup, seq, state), connection=client, serializer=JSONSerializer)


def report(client: redis.Redis, seq: int, state: str, dedup: str = DEDUP) -> dict[str, Any]:
    """What a finished delivery job returned (outcome per sink)."""
    found = job(client, seq, state, dedup)
    assert found.get_status() == JobStatus.FINISHED, found.latest_result()
    result = found.return_value()
    assert isinstance(result, dict)
    return result


def outcomes(client: redis.Redis, seq: int, state: str, dedup: str = DEDUP) -> tuple[str, str]:
    """(Slack, PagerDuty) outcomes of a finished delivery job."""
    result = report(client, seq, state, dedup)
    return result["slack"], result["pagerduty"]


def requeue_scheduled(client: redis.Redis, *job_ids: str) -> None:
    """Run RQ's scheduled retries now instead of after their 10 s interval, in the order given."""
    registry = queue(ALERT_QUEUE, client).scheduled_job_registry
    for job_id in job_ids:
        registry.requeue(job_id)


async def test_trigger_sends_one_slack_message_and_one_pagerduty_trigger(
    alert_env: Callable[..., None], sinks: Sinks, redis_client: redis.Redis, run_worker: RunWorker
) -> None:
    """A critical alert: one Slack message (fallback + blocks: summary, facts, runbook, dedup) and one PD trigger."""
    transition = record(redis_client)
    assert transition is not None
    assert (transition.seq, transition.state) == (1, "trigger")
    await deliver(redis_client, run_worker)

    [message] = sinks.slack.bodies
    assert "RF cannot cover 2026-11-24" in message["text"]
    assert f"{RUNBOOK}#rf-short" in message["text"]
    types = [block["type"] for block in message["blocks"]]
    assert types == ["header", "section", "section", "context"]
    assert message["blocks"][0]["text"]["text"] == "🚨 CRITICAL · rf_short"
    assert (
        message["blocks"][1]["text"]["text"]
        == "CRITICAL: RF cannot cover 2026-11-24: 4 transfers (16500.00) left unsettled"
    )
    fields = [f["text"] for f in message["blocks"][2]["fields"]]
    assert fields == ["*amount*\n16500.00", "*deadline*\n2026-11-24", "*minutes_to_cutoff*\n53", "*transfers*\n4"]
    context = message["blocks"][3]["elements"][0]["text"]
    assert context == f"Runbook: <{RUNBOOK}#rf-short|runbook: rf_short> · dedup `{DEDUP}` · incident 1"

    [event] = sinks.pagerduty.bodies
    assert event == {
        "routing_key": ROUTING_KEY,
        "event_action": "trigger",
        "dedup_key": DEDUP,
        "payload": {
            "summary": "RF cannot cover 2026-11-24: 4 transfers (16500.00) left unsettled",
            "source": "settlekeeper",
            "severity": "critical",
            "class": "rf_short",
            "custom_details": {**FACTS, "runbook": f"{RUNBOOK}#rf-short", "incident": 1},
        },
        "links": [{"href": f"{RUNBOOK}#rf-short", "text": "runbook"}],
    }
    assert report(redis_client, 1, "trigger") == {
        "dedup_key": DEDUP,
        "seq": 1,
        "state": "trigger",
        "slack": "sent",
        "pagerduty": "sent",
    }
    assert redis_client.get(keys.alert_sent(DEDUP, 1, "trigger", "pagerduty")) == b"sent 202"


async def test_resolve_sends_resolved_to_slack_and_a_resolve_to_pagerduty(
    alert_env: Callable[..., None], sinks: Sinks, redis_client: redis.Redis, run_worker: RunWorker
) -> None:
    """Resolving posts "Resolved: ..." (with what cleared it) and a PD resolve with the same dedup_key."""
    record(redis_client)
    await deliver(redis_client, run_worker)
    assert record(redis_client, "resolve", "info", "RF funded: every transfer settled", facts={}) is not None
    await deliver(redis_client, run_worker)

    resolved = sinks.slack.bodies[1]
    assert resolved["text"].startswith("Resolved: RF cannot cover 2026-11-24")
    assert resolved["blocks"][0]["text"]["text"] == "✅ Resolved · rf_short"
    assert "RF funded: every transfer settled" in resolved["blocks"][1]["text"]["text"]
    assert sinks.pagerduty.bodies[1] == {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": DEDUP}
    assert (len(sinks.slack.received), len(sinks.pagerduty.received)) == (2, 2)
    assert record(redis_client, "resolve", "info", "again", facts={}) is None


async def test_raising_the_same_alert_twice_is_delivered_once(
    alert_env: Callable[..., None], sinks: Sinks, redis_client: redis.Redis, run_worker: RunWorker
) -> None:
    """The same alert raised again (same or lower severity, before or after delivery) sends nothing more."""
    assert record(redis_client) is not None
    assert record(redis_client) is None
    await deliver(redis_client, run_worker)
    assert record(redis_client) is None
    assert record(redis_client, severity="warning") is None
    await deliver(redis_client, run_worker)
    assert (len(sinks.slack.received), len(sinks.pagerduty.received)) == (1, 1)


async def test_escalation_is_a_second_delivery_with_the_same_dedup_key(
    alert_env: Callable[..., None], sinks: Sinks, redis_client: redis.Redis, run_worker: RunWorker
) -> None:
    """Warning → critical: Slack hears both ("Escalated to CRITICAL"), PagerDuty is paged at critical only."""
    record(redis_client, severity="warning", summary="RF may not cover 2026-11-24")
    await deliver(redis_client, run_worker)
    assert (len(sinks.slack.received), len(sinks.pagerduty.received)) == (1, 0)
    assert report(redis_client, 1, "trigger")["pagerduty"] == "not_routed"

    transition = record(redis_client, severity="critical", summary="RF cannot cover 2026-11-24")
    assert transition is not None
    assert (transition.seq, transition.state) == (1, "escalate-critical")
    assert redis_client.ttl(keys.alert_state(DEDUP, 1, "escalate-critical")) > 30 * 86400
    await deliver(redis_client, run_worker)

    assert sinks.slack.bodies[1]["text"].startswith("Escalated to CRITICAL: RF cannot cover 2026-11-24")
    [event] = sinks.pagerduty.bodies
    assert (event["event_action"], event["dedup_key"], event["payload"]["severity"]) == ("trigger", DEDUP, "critical")
    assert outcomes(redis_client, 1, "escalate-critical") == ("sent", "sent")


async def test_a_trigger_after_resolve_opens_a_new_incident(
    alert_env: Callable[..., None], sinks: Sinks, redis_client: redis.Redis, run_worker: RunWorker
) -> None:
    """Trigger, resolve, trigger: the second trigger is incident 2 and is delivered like the first."""
    record(redis_client)
    await deliver(redis_client, run_worker)
    record(redis_client, "resolve", "info", "cleared", facts={})
    await deliver(redis_client, run_worker)
    transition = record(redis_client, summary="RF short again")
    assert transition is not None
    assert transition.seq == 2
    await deliver(redis_client, run_worker)

    assert [e["event_action"] for e in sinks.pagerduty.bodies] == ["trigger", "resolve", "trigger"]
    assert {e["dedup_key"] for e in sinks.pagerduty.bodies} == {DEDUP}
    assert sinks.pagerduty.bodies[2]["payload"]["custom_details"]["incident"] == 2
    assert sinks.slack.bodies[2]["blocks"][-1]["elements"][0]["text"].endswith("incident 2")
    assert report(redis_client, 2, "trigger")["slack"] == "sent"


async def test_states_queued_together_go_out_in_order_each_with_its_own_payload(
    alert_env: Callable[..., None], sinks: Sinks, redis_client: redis.Redis, run_worker: RunWorker
) -> None:
    """Warning, escalation, resolve and a new incident recorded before any delivery: each says what was true then."""
    record(redis_client, severity="warning", summary="A: may be short")
    record(redis_client, severity="critical", summary="B: short")
    record(redis_client, "resolve", "info", "B cleared", facts={})
    record(redis_client, severity="critical", summary="C: short again")
    assert enqueue_alert_deliveries(redis_client) == 4
    await run_worker()

    assert [m["text"].split(" (runbook")[0] for m in sinks.slack.bodies] == [
        "WARNING: A: may be short",
        "Escalated to CRITICAL: B: short",
        "Resolved: B: short",
        "CRITICAL: C: short again",
    ]
    assert [(e["event_action"], e.get("payload", {}).get("summary")) for e in sinks.pagerduty.bodies] == [
        ("trigger", "B: short"),
        ("resolve", None),
        ("trigger", "C: short again"),
    ]


async def test_a_retried_warning_is_not_sent_after_its_escalation(
    alert_env: Callable[..., None], sinks: Sinks, redis_client: redis.Redis, run_worker: RunWorker
) -> None:
    """The warning's delivery fails, the critical escalation goes out, then RQ retries the warning: it is dropped."""
    sinks.slack.answer(*[(503, "busy", {})] * 3)
    record(redis_client, severity="warning", summary="may be short")
    await deliver(redis_client, run_worker)
    assert job(redis_client, 1, "trigger").get_status() == JobStatus.SCHEDULED
    record(redis_client, severity="critical", summary="short")
    await deliver(redis_client, run_worker)
    requeue_scheduled(redis_client, delivery_job_id(DEDUP, 1, "trigger"))
    await run_worker()

    assert [m["text"].split(" (runbook")[0] for m in sinks.slack.bodies[3:]] == ["Escalated to CRITICAL: short"]
    assert outcomes(redis_client, 1, "trigger") == ("superseded", "not_routed")


async def test_duplicates_are_suppressed_across_a_listener_restart_and_a_replayed_job(
    alert_env: Callable[..., None], sinks: Sinks, redis_client: redis.Redis, run_worker: RunWorker
) -> None:
    """A restarted listener re-flushing the outbox, and the same job enqueued again after it ran, send nothing."""
    settings = load_settings({})
    now = datetime(2026, 11, 24, 15, tzinfo=UTC)
    entry = f"{DEDUP}|1|trigger"
    record(redis_client)
    assert redis_client.smembers(keys.ALERT_OUTBOX) == {entry.encode()}
    listener = Scheduler(settings, redis_client, lambda: now, TradingCalendar())
    assert await listener.flush_alerts() == 1
    assert await listener.flush_alerts() == 0
    await run_worker()

    redis_client.sadd(keys.ALERT_OUTBOX, entry)  # died after the enqueue, before the outbox entry was removed
    restarted = Scheduler(settings, redis_client, lambda: now, TradingCalendar())
    assert await restarted.flush_alerts() == 0  # the unique job id refuses a second copy
    assert redis_client.scard(keys.ALERT_OUTBOX) == 0

    job(redis_client, 1, "trigger").delete()  # past RQ's result TTL the job id is free again
    redis_client.sadd(keys.ALERT_OUTBOX, entry)
    assert await restarted.flush_alerts() == 1
    await run_worker()
    assert outcomes(redis_client, 1, "trigger") == ("already_sent", "already_sent")
    assert (len(sinks.slack.received), len(sinks.pagerduty.received)) == (1, 1)


async def test_the_listener_tick_flushes_the_alert_outbox(redis_client: redis.Redis) -> None:
    """Scheduler.tick hands a state change left in the outbox (a crash before its enqueue) to the alert queue."""
    record(redis_client)
    scheduler = Scheduler(
        load_settings({}), redis_client, lambda: datetime(2026, 11, 22, 15, tzinfo=UTC), TradingCalendar()
    )
    await scheduler.tick()
    assert delivery_job_id(DEDUP, 1, "trigger") in queue(ALERT_QUEUE, redis_client).job_ids
    assert redis_client.scard(keys.ALERT_OUTBOX) == 0


async def test_job_retries_send_only_what_did_not_go_out_and_resolve_waits_for_its_trigger(
    alert_env: Callable[..., None], sinks: Sinks, redis_client: redis.Redis, run_worker: RunWorker
) -> None:
    """PagerDuty 5xx on every attempt: Slack is sent once; RQ's retries page, then resolve, in that order."""
    sinks.pagerduty.answer(*[(503, "busy", {})] * 3)
    record(redis_client)
    record(redis_client, "resolve", "info", "cleared", facts={})
    await deliver(redis_client, run_worker)

    assert len(sinks.slack.received) == 2
    assert [e["event_action"] for e in sinks.pagerduty.bodies] == ["trigger"] * 3
    trigger_id, resolve_id = delivery_job_id(DEDUP, 1, "trigger"), delivery_job_id(DEDUP, 1, "resolve")
    assert job(redis_client, 1, "trigger").get_status() == JobStatus.SCHEDULED
    assert job(redis_client, 1, "resolve").get_status() == JobStatus.SCHEDULED  # waits for PagerDuty's trigger
    requeue_scheduled(redis_client, trigger_id, resolve_id)
    await run_worker()

    assert len(sinks.slack.received) == 2
    assert [e["event_action"] for e in sinks.pagerduty.bodies] == ["trigger"] * 4 + ["resolve"]
    assert outcomes(redis_client, 1, "trigger") == ("already_sent", "sent")
    assert redis_client.hget(keys.metrics("alerts"), "rf_short|pagerduty|retry") == b"2"


async def test_a_worker_killed_between_slack_and_pagerduty_retries_pagerduty_only(
    sandbox: Sandbox,
    sinks: Sinks,
    redis_client: redis.Redis,
    session_redis_url: str,
    run_worker: RunWorker,
    alert_env: Callable[..., None],
) -> None:
    """SIGKILL-like exit right after Slack was sent and marked: RQ's retry of the abandoned job pages only."""
    record(redis_client)
    enqueue_alert_deliveries(redis_client)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "SETTLEKEEPER_REDIS_URL": session_redis_url,
        "SETTLEKEEPER_BROKER_URL": sandbox.base_url,
        "SETTLEKEEPER_LOG_FORMAT": "json",
        **JOB_ENV,
        **sink_env(sinks),
        "SETTLEKEEPER_FAILPOINT": "alert.after_slack",
    }
    proc = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "cli.main", "work", "--burst", "--worker-class", "simple"],
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == KILLED_EXIT_STATUS, output.decode()[-3000:]
    assert (len(sinks.slack.received), len(sinks.pagerduty.received)) == (1, 0)
    assert SLACK_PATH.encode() not in output
    assert ROUTING_KEY.encode() not in output

    registry = StartedJobRegistry(ALERT_QUEUE, connection=redis_client, serializer=JSONSerializer)
    registry.cleanup(timestamp=time.time() + 2 * JOB_TIMEOUT_SECONDS + 3600)  # the dead job's timeout passed
    requeue_scheduled(redis_client, delivery_job_id(DEDUP, 1, "trigger"))
    await run_worker()

    assert (len(sinks.slack.received), len(sinks.pagerduty.received)) == (1, 1)
    assert outcomes(redis_client, 1, "trigger") == ("already_sent", "sent")


async def test_429_waits_for_retry_after(
    alert_env: Callable[..., None], sinks: Sinks, redis_client: redis.Redis, run_worker: RunWorker
) -> None:
    """Slack's 429 with Retry-After: 1 is honoured: the second attempt arrives at least 1 s after the first."""
    alert_env(alert_max_wait_seconds="60")
    sinks.slack.answer((429, "rate_limited", {"Retry-After": "1"}))
    record(redis_client)
    await deliver(redis_client, run_worker)

    first, second = sinks.slack.received
    assert second.at - first.at >= 1.0
    assert first.body == second.body
    assert report(redis_client, 1, "trigger")["slack"] == "sent"


@pytest.mark.parametrize("status", [400, 403, 404, 410])
async def test_other_4xx_is_not_retried(
    alert_env: Callable[..., None], sinks: Sinks, redis_client: redis.Redis, run_worker: RunWorker, status: int
) -> None:
    """Slack refusing (4xx other than 429): one request, error logged with Slack's text, counted; PD still paged."""
    sinks.slack.answer((status, "invalid_payload", {}))
    record(redis_client)
    with structlog.testing.capture_logs() as logs:
        await deliver(redis_client, run_worker)

    assert (len(sinks.slack.received), len(sinks.pagerduty.received)) == (1, 1)
    refused = [
        {k: e[k] for k in ("log_level", "sink", "status", "error")} for e in logs if e["event"] == "alert_refused"
    ]
    assert refused == [{"log_level": "error", "sink": "slack", "status": status, "error": "invalid_payload"}]
    assert outcomes(redis_client, 1, "trigger") == ("refused", "sent")
    assert redis_client.hget(keys.metrics("alerts"), "rf_short|slack|refused") == b"1"

    job(redis_client, 1, "trigger").delete()  # enqueued again (an operator, a replay): still not retried
    redis_client.sadd(keys.ALERT_OUTBOX, f"{DEDUP}|1|trigger")
    await deliver(redis_client, run_worker)
    assert outcomes(redis_client, 1, "trigger") == ("already_sent", "already_sent")
    assert len(sinks.slack.received) == 1


async def test_500_is_retried_then_succeeds(
    alert_env: Callable[..., None], sinks: Sinks, redis_client: redis.Redis, run_worker: RunWorker
) -> None:
    """A 500 from PagerDuty is retried inside the job; the next 202 completes it (no RQ retry needed)."""
    sinks.pagerduty.answer((500, "oops", {}))
    record(redis_client)
    await deliver(redis_client, run_worker)

    assert len(sinks.pagerduty.received) == 2
    assert sinks.pagerduty.bodies[0] == sinks.pagerduty.bodies[1]
    assert report(redis_client, 1, "trigger")["pagerduty"] == "sent"


async def test_nothing_is_sent_to_an_unconfigured_sink(
    alert_env: Callable[..., None], sinks: Sinks, redis_client: redis.Redis, run_worker: RunWorker
) -> None:
    """No webhook URL and no routing key: no request reaches either capture server and the job finishes."""
    alert_env(slack_webhook_url="", pagerduty_routing_key="")
    record(redis_client)
    await deliver(redis_client, run_worker)
    assert (len(sinks.slack.received), len(sinks.pagerduty.received)) == (0, 0)
    assert outcomes(redis_client, 1, "trigger") == ("unconfigured", "unconfigured")

    alert_env(pagerduty_routing_key="")  # Slack only
    record(redis_client, severity="critical", dedup="slack-only")
    await deliver(redis_client, run_worker)
    assert (len(sinks.slack.received), len(sinks.pagerduty.received)) == (1, 0)


async def test_routing_by_severity(
    alert_env: Callable[..., None], sinks: Sinks, redis_client: redis.Redis, run_worker: RunWorker
) -> None:
    """Default routes: info goes to Slack, not PagerDuty (nor does its resolve); routes are configurable."""
    record(redis_client, severity="info", kind="digest", dedup="digest-2026-11-24", summary="09:30 digest")
    record(redis_client, "resolve", "info", "done", facts={}, kind="digest", dedup="digest-2026-11-24")
    await deliver(redis_client, run_worker)
    assert [m["text"].split(" (")[0] for m in sinks.slack.bodies] == ["INFO: 09:30 digest", "Resolved: 09:30 digest"]
    assert sinks.pagerduty.received == []
    assert report(redis_client, 1, "resolve", "digest-2026-11-24")["pagerduty"] == "not_routed"

    alert_env(alert_routes='{"pagerduty": ["warning", "critical"]}')
    record(redis_client, severity="warning", kind="if_limit", dedup="if-limit-80", summary="IF limit at 80 %")
    await deliver(redis_client, run_worker)
    assert len(sinks.slack.received) == 2
    assert [e["payload"]["severity"] for e in sinks.pagerduty.bodies] == ["warning"]


async def test_secrets_never_reach_logs_or_redis(
    alert_env: Callable[..., None],
    sinks: Sinks,
    redis_client: redis.Redis,
    run_worker: RunWorker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Through unreachable hosts, 429/5xx, a refusal echoing the key and RQ retries, no secret is logged or stored."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        unreachable = f"http://127.0.0.1:{closed.getsockname()[1]}{SLACK_PATH}"
    alert_env(slack_webhook_url=unreachable)
    sinks.pagerduty.answer((400, f'{{"status": "invalid event", "errors": ["routing_key {ROUTING_KEY}"]}}', {}))
    record(redis_client)
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as logs:
        await deliver(redis_client, run_worker)
        assert job(redis_client, 1, "trigger").get_status() == JobStatus.SCHEDULED
        alert_env()
        sinks.slack.answer((429, "rate_limited", {}), (500, "rollup_error", {}))
        requeue_scheduled(redis_client, delivery_job_id(DEDUP, 1, "trigger"))
        await run_worker()
    assert outcomes(redis_client, 1, "trigger") == ("sent", "already_sent")
    assert [e["error"] for e in logs if e["event"] == "alert_send_retry"] == [
        "ClientConnectorError",
        "ClientConnectorError",
        "HTTP 429",
        "HTTP 500",
    ]
    assert [e["error"] for e in logs if e["event"] == "alert_refused"] == [
        '{"status": "invalid event", "errors": ["routing_key [redacted]"]}'
    ]

    secrets = (SLACK_PATH, "xoxWebhookSecret42", ROUTING_KEY)
    logged = repr(logs) + caplog.text
    assert [s for s in secrets if s in logged] == []
    stored = b"\n".join(dump(redis_client))
    assert keys.alert(DEDUP).encode() in stored
    assert [s for s in secrets if s.encode() in stored] == []


def dump(client: redis.Redis) -> list[bytes]:
    """Every key and value in the database (zlib-compressed RQ payloads inflated)."""
    out: list[bytes] = []
    for name in client.scan_iter(count=1000):
        kind = client.type(name)
        values: list[Any]
        if kind == b"string":
            values = [client.get(name)]
        elif kind == b"hash":
            values = [part for pair in client.hgetall(name).items() for part in pair]
        elif kind == b"list":
            values = list(client.lrange(name, 0, -1))
        elif kind == b"set":
            values = list(client.smembers(name))
        elif kind == b"zset":
            values = list(client.zrange(name, 0, -1))
        else:
            values = [repr(client.xrange(name)).encode()]
        out.append(name)
        for value in values:
            if isinstance(value, bytes):
                out.append(value)
                with contextlib.suppress(zlib.error):
                    out.append(zlib.decompress(value))
    return out


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("1", 1.0), ("0.5", 0.5), ("-3", 0.0), ("soon", None), (None, None)],
)
def test_retry_after_seconds(value: str | None, seconds: float | None) -> None:
    """Retry-After as delay-seconds; nonsense or absent means "use the backoff"."""
    assert parse_retry_after(value) == seconds


def test_retry_after_http_date() -> None:
    """Retry-After as an HTTP date is the time until then."""
    parsed = parse_retry_after(format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True))
    assert parsed is not None
    assert 28 <= parsed <= 30


def test_alert_settings_defaults_and_validation() -> None:
    """Sinks are off by default; routes are checked at start-up naming the variable, never echoing a secret."""
    settings = load_settings({})
    assert (settings.slack_webhook_url, settings.pagerduty_routing_key) == (None, None)
    assert settings.pagerduty_url == "https://events.pagerduty.com/v2/enqueue"
    assert settings.routes == {"slack": {"info", "warning", "critical"}, "pagerduty": {"critical"}}
    assert (settings.runbook_url, settings.alert_max_wait_seconds, settings.alert_source) == (
        "docs/runbook.md",
        60.0,
        "settlekeeper",
    )
    assert load_settings({"SETTLEKEEPER_ALERT_ROUTES": '{"slack": ["critical"]}'}).routes["pagerduty"] == frozenset()
    for routes in ('{"email": ["info"]}', '{"slack": ["fatal"]}', '{"slack": "info"}', "[]", "not json"):
        with pytest.raises(ConfigError, match="SETTLEKEEPER_ALERT_ROUTES"):
            load_settings({"SETTLEKEEPER_ALERT_ROUTES": routes})
    with pytest.raises(ConfigError, match="SETTLEKEEPER_SLACK_WEBHOOK_URL") as bad:
        load_settings({"SETTLEKEEPER_SLACK_WEBHOOK_URL": "hooks.slack.com/services/T1/B2/seekrit"})
    assert "seekrit" not in str(bad.value)
    with pytest.raises(ConfigError, match="SETTLEKEEPER_PAGERDUTY_URL"):
        load_settings({"SETTLEKEEPER_PAGERDUTY_URL": "events.pagerduty.com"})
    assert load_settings({"SETTLEKEEPER_PAGERDUTY_ROUTING_KEY": " "}).pagerduty_routing_key is None


def lose_the_alert(client: redis.Redis) -> None:
    """What a Redis restart losing its last second does to a just-raised alert: its hash and state are gone."""
    client.delete(keys.alert(DEDUP), keys.alert_state(DEDUP, 1, "trigger"))


async def test_a_trigger_redis_lost_and_raised_again_is_delivered_before_its_resolve(
    alert_env: Callable[..., None], sinks: Sinks, redis_client: redis.Redis, run_worker: RunWorker
) -> None:
    """The chaos run's 20-day failure: the trigger's delivery found its state lost (a restart), then the alert was
    raised again as incident 1 and resolved. The trigger retries instead of ending, so it goes out, then the
    resolve; before, the trigger ended "missing" and the resolve waited for it until it failed for good."""
    record(redis_client)
    enqueue_alert_deliveries(redis_client)
    lose_the_alert(redis_client)
    await run_worker()
    assert job(redis_client, 1, "trigger").get_status() == JobStatus.SCHEDULED
    record(redis_client)  # the condition seen again: incident 1 once more (its number was lost with the hash)
    record(redis_client, "resolve", "info", "RF covered it", facts={})
    await deliver(redis_client, run_worker)
    requeue_scheduled(redis_client, delivery_job_id(DEDUP, 1, "trigger"))
    await run_worker()
    requeue_scheduled(redis_client, delivery_job_id(DEDUP, 1, "resolve"))
    await run_worker()

    assert outcomes(redis_client, 1, "trigger") == ("sent", "sent")
    assert outcomes(redis_client, 1, "resolve") == ("sent", "sent")
    assert [e["event_action"] for e in sinks.pagerduty.bodies] == ["trigger", "resolve"]


async def test_a_state_lost_for_good_ends_its_delivery_on_the_last_try_without_failing_it(
    alert_env: Callable[..., None], sinks: Sinks, redis_client: redis.Redis, run_worker: RunWorker
) -> None:
    """Never raised again: the trigger is tried RQ's four times, then ends "missing" (finished, not failed: a
    failed delivery would only page about a page), and nothing is sent."""
    record(redis_client)
    enqueue_alert_deliveries(redis_client)
    lose_the_alert(redis_client)
    await run_worker()
    for _ in range(3):
        requeue_scheduled(redis_client, delivery_job_id(DEDUP, 1, "trigger"))
        await run_worker()
    assert report(redis_client, 1, "trigger")["outcome"] == "missing"
    assert sinks.slack.bodies == []
    assert sinks.pagerduty.bodies == []
