"""``settlekeeper doctor`` before go-live: one line per check, exit 1 on a failure, never a secret."""

from __future__ import annotations

import json

from tests.support.cli import clean_env, finish, start
from tests.support.sandbox import Sandbox

SECRET = "s3cret-never-printed"
PASSWORD = "redis-pw-never-printed"


async def doctor(env: dict[str, str], *args: str) -> tuple[int, list[str]]:
    proc = await start("doctor", *args, env=env)
    out, err = await finish(proc, within=60)
    assert proc.returncode is not None
    text = out.decode() + err.decode()
    assert SECRET not in text
    assert PASSWORD not in text
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
