"""``settlekeeper doctor`` before go-live: one line per check, exit 1 on a failure, never a secret."""

from __future__ import annotations

import json

from tests.support.cli import clean_env, finish, start
from tests.support.sandbox import Sandbox
from tests.support.sinks import ROUTING_KEY, SLACK_PATH, Sinks

SECRET = "s3cret-never-printed"
PASSWORD = "redis-pw-never-printed"


async def doctor(env: dict[str, str], *args: str) -> tuple[int, list[str]]:
    proc = await start("doctor", *args, env=env)
    out, err = await finish(proc, within=60)
    assert proc.returncode is not None
    text = out.decode() + err.decode()
    assert SECRET not in text
    assert PASSWORD not in text
    assert SLACK_PATH not in text
    assert ROUTING_KEY not in text
    return proc.returncode, out.decode().splitlines()


def marked(lines: list[str], mark: str) -> dict[str, str]:
    """The lines of one mark (ok, warn, FAIL), by check name."""
    found = {}
    for line in lines:
        if line.startswith(mark):
            name, _, detail = line[len(mark) :].strip().partition(" ")
            found[name] = detail.strip()
    return found


async def test_a_healthy_deployment_passes_with_its_warnings(sandbox: Sandbox, session_redis_url: str) -> None:
    """Against the sandbox and a reachable Redis: every check ok but the unconfigured sinks (warnings), exit 0."""
    env = clean_env(SETTLEKEEPER_BROKER_URL=sandbox.base_url, SETTLEKEEPER_REDIS_URL=session_redis_url)
    code, lines = await doctor(env)
    ok = marked(lines, "ok")
    assert code == 0, lines
    assert ok["broker"] == f"{sandbox.base_url} accepts the credentials"
    assert (ok["SI"], ok["RF"], ok["FW"]) == (
        "account 7536050SI found",
        "account 7536050RF found",
        "account 7536050FW found",
    )
    assert ok["instant"] == "instant funding is enabled (limits readable)"
    assert ok["activities"].startswith("/v2beta1/events/activities connects")
    assert set(marked(lines, "warn")) >= {"slack", "pagerduty"}
    assert marked(lines, "FAIL") == {}
    code, out = await doctor(env, "--json")
    assert json.loads("\n".join(out))["ok"] is True


async def test_wrong_credentials_and_an_unreachable_redis_fail_one_line_each(sandbox: Sandbox) -> None:
    """A refused secret and a Redis that does not answer: exit 1, a FAIL line each naming what to fix."""
    env = clean_env(
        SETTLEKEEPER_BROKER_URL=sandbox.base_url,
        SETTLEKEEPER_BROKER_SECRET=SECRET,
        SETTLEKEEPER_REDIS_URL=f"redis://:{PASSWORD}@127.0.0.1:1/0",
    )
    code, lines = await doctor(env)
    failed = marked(lines, "FAIL")
    assert code == 1
    assert failed == {
        "redis": "Redis at redis://127.0.0.1:1/0 does not answer: ConnectionError",
        "broker": f"{sandbox.base_url} refused the credentials (SETTLEKEEPER_BROKER_KEY / SETTLEKEEPER_BROKER_SECRET, "
        "neither shown)",
    }


async def test_a_missing_rf_account_fails_naming_the_setting(sandbox: Sandbox, session_redis_url: str) -> None:
    """An RF account number Alpaca does not know: exit 1, one line naming the number and the setting."""
    env = clean_env(
        SETTLEKEEPER_BROKER_URL=sandbox.base_url,
        SETTLEKEEPER_REDIS_URL=session_redis_url,
        SETTLEKEEPER_RF_ACCOUNT_NO="7536050XX",
    )
    code, lines = await doctor(env)
    assert code == 1
    assert marked(lines, "FAIL") == {"RF": "no account numbered 7536050XX (SETTLEKEEPER_RF_ACCOUNT_NO)"}


def sink_settings(sinks: Sinks) -> dict[str, str]:
    return {
        "SETTLEKEEPER_SLACK_WEBHOOK_URL": sinks.slack.url,
        "SETTLEKEEPER_PAGERDUTY_URL": sinks.pagerduty.url,
        "SETTLEKEEPER_PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
        "SETTLEKEEPER_ALERT_MAX_WAIT_SECONDS": "0.05",
    }


async def test_send_test_alert_reaches_slack_and_pagerduty_and_resolves_there(
    sandbox: Sandbox, session_redis_url: str, sinks: Sinks
) -> None:
    """--send-test-alert: one info message in Slack, a PagerDuty trigger then its resolve, ok lines, exit 0."""
    env = clean_env(
        SETTLEKEEPER_BROKER_URL=sandbox.base_url, SETTLEKEEPER_REDIS_URL=session_redis_url, **sink_settings(sinks)
    )
    code, lines = await doctor(env, "--send-test-alert")
    ok = marked(lines, "ok")
    assert code == 0, lines
    assert ok["slack"] == "configured; the test alert was accepted (HTTP 200)"
    assert ok["pagerduty"] == "configured; the test alert was accepted (HTTP 202)"
    [message] = sinks.slack.bodies
    assert message["blocks"][0]["text"]["text"] == "ℹ️ INFO · test_alert"
    assert "a test alert from settlekeeper; nothing is wrong" in message["text"]
    trigger, resolve = sinks.pagerduty.bodies
    assert (trigger["event_action"], trigger["payload"]["severity"], trigger["payload"]["class"]) == (
        "trigger",
        "info",
        "test_alert",
    )
    assert resolve == {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": trigger["dedup_key"]}
    assert trigger["dedup_key"].startswith("test-alert-")


async def test_a_refused_test_alert_fails_its_line_without_the_credential(
    sandbox: Sandbox, session_redis_url: str, sinks: Sinks
) -> None:
    """Slack 403 and a PagerDuty 400 echoing the routing key: exit 1, a FAIL line each, the key redacted."""
    sinks.slack.answer((403, "invalid_token", {}))
    sinks.pagerduty.answer((400, f'{{"status": "invalid event", "errors": ["routing_key {ROUTING_KEY}"]}}', {}))
    env = clean_env(
        SETTLEKEEPER_BROKER_URL=sandbox.base_url, SETTLEKEEPER_REDIS_URL=session_redis_url, **sink_settings(sinks)
    )
    code, lines = await doctor(env, "--send-test-alert")
    failed = marked(lines, "FAIL")
    assert code == 1
    assert failed == {
        "slack": "the test alert was refused: HTTP 403: invalid_token (SETTLEKEEPER_SLACK_WEBHOOK_URL)",
        "pagerduty": 'the test alert was refused: HTTP 400: {"status": "invalid event", "errors": ["routing_key '
        '[redacted]"]} (SETTLEKEEPER_PAGERDUTY_ROUTING_KEY)',
    }
    assert len(sinks.pagerduty.bodies) == 1  # no resolve after a refused trigger
