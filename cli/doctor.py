"""``settlekeeper doctor``: check a deployment before it goes live, one line per check, never a secret.

Settings, Redis (and whether it persists), the Broker API credentials, instant funding enabled, the SI, RF
and FW accounts, the clock against ``GET /v1/clock``, each stream, the alert sinks and the guardrail modes.
Exit 1 when any check fails; a warning does not fail it.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp
import redis

from broker.client import BrokerClient
from broker.events import Stream
from broker.stream import ConnectInfo, Oversized, open_stream, stream_session
from cli.output import OK, PROBLEM, Out
from config.settings import Settings
from funding.alerts import Alert, Severity
from funding.errors import AuthenticationError, NotFoundError, SettlekeeperError
from jobs.alert_delivery import send_test
from store.clients import describe, sync_client

CLOCK_SKEW_SECONDS = 5.0
"""More than this between this machine and Alpaca's clock is a failure: the phases run at the wrong time."""


@dataclass(frozen=True)
class Check:
    name: str
    state: str
    """``ok``, ``warn`` or ``fail``."""
    detail: str


def doctor(settings: Settings, args: argparse.Namespace) -> int:
    out = Out(json=args.json)
    checks = [Check("settings", "ok", "SETTLEKEEPER_* settings are valid")]
    checks.append(_redis(settings))
    checks += asyncio.run(_broker_checks(settings))
    checks += asyncio.run(_sent(settings)) if args.send_test_alert else _sinks(settings)
    checks.append(_modes(settings))
    if out.json:
        out.data({"ok": all(c.state != "fail" for c in checks), "checks": [c.__dict__ for c in checks]})
    else:
        marks = {"ok": ("ok  ", "green"), "warn": ("warn", "yellow"), "fail": ("FAIL", "red")}
        for check in checks:
            mark, colour = marks[check.state]
            out.line(f"{out.paint(mark, colour)}  {check.name:<10} {check.detail}")
    return PROBLEM if any(c.state == "fail" for c in checks) else OK


def _redis(settings: Settings) -> Check:
    if settings.redis_url is None:
        return Check("redis", "fail", "SETTLEKEEPER_REDIS_URL is not set")
    url = settings.redis_url.get_secret_value()
    where = describe(url)
    client = sync_client(url, socket_timeout=3)
    try:
        client.ping()
        persistence = client.info("persistence")
    except redis.RedisError as exc:
        return Check("redis", "fail", f"Redis at {where} does not answer: {type(exc).__name__}")
    finally:
        client.close()
    if persistence.get("aof_enabled"):
        return Check("redis", "ok", f"Redis at {where} answers; AOF is on")
    return Check(
        "redis",
        "warn",
        f"Redis at {where} answers; AOF is off: a restart loses queued jobs until the guard redoes them",
    )


async def _broker_checks(settings: Settings) -> list[Check]:
    where = settings.broker_url
    async with BrokerClient(settings, attempts=1) as broker:
        try:
            now = await broker.clock()
        except AuthenticationError:
            named = "SETTLEKEEPER_BROKER_KEY / SETTLEKEEPER_BROKER_SECRET, neither shown"
            return [Check("broker", "fail", f"{where} refused the credentials ({named})")]
        except SettlekeeperError as exc:
            reason = str(exc).split(": ", 2)[-1][:60]
            return [Check("broker", "fail", f"{where} cannot be reached ({type(exc).__name__}: {reason})")]
        checks = [Check("broker", "ok", f"{where} accepts the credentials"), _clock(settings, now)]
        checks.append(await _probe("instant", broker.if_limits, "instant funding is enabled (limits readable)"))
        firm = {"SI": settings.si_account_no, "RF": settings.rf_account_no, "FW": settings.fw_account_no}
        checks += [await _account(broker, role, number) for role, number in firm.items()]
        for name in settings.stream_names:
            checks.append(await _stream(settings, broker, Stream(name)))
    return checks


def _clock(settings: Settings, broker_now: datetime) -> Check:
    if settings.follows_broker_clock:
        return Check("clock", "ok", f"the business clock follows the Broker API's ({broker_now.isoformat()})")
    skew = abs((datetime.now(UTC) - broker_now).total_seconds())
    state = "ok" if skew <= CLOCK_SKEW_SECONDS else "fail"
    return Check(
        "clock", state, f"this machine and Alpaca's clock differ by {skew:.1f} s (at most {CLOCK_SKEW_SECONDS:.0f})"
    )


async def _probe(name: str, call: Callable[[], Awaitable[object]], good: str) -> Check:
    try:
        await call()
    except SettlekeeperError as exc:
        return Check(name, "fail", f"not readable: {type(exc).__name__}: {str(exc)[:120]}")
    return Check(name, "ok", good)


async def _account(broker: BrokerClient, role: str, number: str) -> Check:
    try:
        await broker.find_account(number)
    except NotFoundError:
        return Check(role, "fail", f"no account numbered {number} (SETTLEKEEPER_{role}_ACCOUNT_NO)")
    except SettlekeeperError as exc:
        return Check(role, "fail", f"{number} could not be looked up: {type(exc).__name__}")
    return Check(role, "ok", f"account {number} found")


async def _stream(settings: Settings, broker: BrokerClient, stream: Stream) -> Check:
    path = settings.stream_path(stream.value)
    started = time.monotonic()
    async with stream_session(settings.heartbeat_seconds, info := ConnectInfo()) as session:
        try:
            async with asyncio.timeout(10):
                async with open_stream(
                    session,
                    info,
                    settings.broker_url + path,
                    params={},
                    headers=broker.auth_header,
                    on_comment=lambda _: None,
                    on_oversized=_ignore,
                ):
                    pass
        except (SettlekeeperError, TimeoutError, aiohttp.ClientError) as exc:
            return Check(stream.value, "fail", f"{path} cannot be read: {type(exc).__name__}: {str(exc)[:100]}")
    return Check(stream.value, "ok", f"{path} connects ({(time.monotonic() - started) * 1000:.0f} ms)")


async def _ignore(_: Oversized) -> None:
    return None


SINK_SETTINGS = {"slack": "SETTLEKEEPER_SLACK_WEBHOOK_URL", "pagerduty": "SETTLEKEEPER_PAGERDUTY_ROUTING_KEY"}


def _unconfigured(sink: str) -> Check:
    return Check(sink, "warn", f"not configured ({SINK_SETTINGS[sink]}): alerts of its route go nowhere")


def _sinks(settings: Settings) -> list[Check]:
    configured = {"slack": settings.slack_webhook_url, "pagerduty": settings.pagerduty_routing_key}
    return [Check(sink, "ok", "configured") if configured[sink] else _unconfigured(sink) for sink in SINK_SETTINGS]


async def _sent(settings: Settings) -> list[Check]:
    """``--send-test-alert``: an info message to each configured sink (PagerDuty's resolved at once)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    alert = Alert(
        "test_alert",
        Severity.INFO,
        f"test-alert-{stamp}",
        f"settlekeeper doctor: a test alert from {settings.alert_source}; nothing is wrong",
        {"sent_at": stamp},
    )
    checks = []
    for sink, (outcome, detail) in (await send_test(settings, alert)).items():
        if outcome == "unconfigured":
            checks.append(_unconfigured(sink))
        elif outcome == "sent":
            checks.append(Check(sink, "ok", f"configured; the test alert was accepted ({detail})"))
        else:
            checks.append(Check(sink, "fail", f"the test alert was {outcome}: {detail} ({SINK_SETTINGS[sink]})"))
    return checks


def _modes(settings: Settings) -> Check:
    modes = {action: settings.mode(action) for action in ("settle", "fund", "cover")}
    text = ", ".join(f"{action} {mode}" for action, mode in modes.items())
    if all(mode == "on" for mode in modes.values()):
        return Check("guardrails", "ok", text)
    return Check("guardrails", "warn", f"{text}: settlekeeper will not move all the money by itself")
