"""Hostile day, item 4: wrong Broker API credentials give one clear failure, not a silent loop or a traceback.

``settlekeeper listen`` (with the wall clock, and with the default clock that follows the sandbox's) logs one
error naming SETTLEKEEPER_BROKER_KEY/SECRET, counts it, raises the ``broker_auth`` alert, answers ``/readyz``
503 and tries again only after ``SETTLEKEEPER_AUTH_RETRY_SECONDS``; the process does not exit. A job meeting a
401 fails at once, without RQ's retries. The log redaction keeps ordinary words ("HTTP Basic with ...").
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import aiohttp
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from broker.client import BrokerClient
from config.settings import load_settings
from funding.errors import AuthenticationError, ClientError
from jobs.registry import enqueue_phase
from sandbox.http import RUNTIME
from store import keys
from tests.support.jobs import RunWorker
from tests.support.processes import Proc, Spawn, environment
from tests.support.sandbox import Sandbox
from tests.support.settle import create_transfers, et

JobEnv = Callable[..., None]
RETRY_SECONDS = 3.0
HINT = "check SETTLEKEEPER_BROKER_KEY and SETTLEKEEPER_BROKER_SECRET"


async def get(proc: Proc, path: str) -> tuple[int, str]:
    port = (await proc.wait_for("listener_started"))["http_port"]
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}{path}") as resp:
        return resp.status, await resp.text()


def metric(text: str, name: str) -> float:
    samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
    return sum(s.value for s in samples if s.name == name)


@pytest.mark.parametrize("clock", ["wall", "auto"])
async def test_item_4_listen_with_wrong_credentials_says_so_once_and_retries_slowly(
    clock: str, sandbox: Sandbox, session_redis_url: str, redis_client: redis.Redis, processes: Spawn
) -> None:
    """One error line naming the variables (with the sandbox's own words unredacted), a metric, an alert,
    /readyz 503, the next try only after the retry interval, and the process keeps running."""
    env = environment(
        session_redis_url, sandbox.base_url, broker_secret="wrong", clock=clock, http_port="0",
        auth_retry_seconds=str(RETRY_SECONDS),
    )  # fmt: skip
    listener = await processes(["listen"], env)
    first = await listener.wait_for("broker_credentials_refused")
    assert HINT in first["error"]
    assert "HTTP 401 (unauthorized: HTTP Basic with the sandbox key and secret is required)" in first["error"]
    assert first["level"] == "error"
    status, body = await get(listener, "/readyz")
    assert (status, json.loads(body)["credentials"]) == (503, False)
    await listener.wait_for("broker_credentials_still_refused", within=RETRY_SECONDS + 5)
    _, metrics = await get(listener, "/metrics")
    assert metric(metrics, "settlekeeper_broker_auth_failures_total") == 2
    assert metric(metrics, "settlekeeper_broker_credentials_ok") == 0
    assert redis_client.hget(keys.alert("broker-auth"), "state") == b"triggered"
    assert listener.proc.returncode is None, "the listener must not exit"
    assert not listener.events("lease_acquired"), "no term starts with refused credentials"
    assert not listener.events("listener_task_failed")
    assert len(listener.events("broker_credentials_refused")) == 1
    assert not [line for line in listener.other if "Traceback" in line]


async def test_item_4_a_job_meeting_a_401_fails_at_once_without_rq_retries(
    sandbox: Sandbox, job_env: JobEnv, run_worker: RunWorker, redis_client: redis.Redis
) -> None:
    """The settle phase with a wrong secret: FAILED with retries_left 0 (nothing scheduled), and the
    broker_auth alert is raised."""
    created = await create_transfers(sandbox, ["10.00"])
    day = created[0]["deadline"]
    await sandbox.set_clock(et(day, 12))
    job_env(sandbox, broker_secret="wrong")
    assert enqueue_phase(redis_client, "settle", day)
    await run_worker()
    job = Job.fetch(f"phase-settle-{day}", connection=redis_client, serializer=JSONSerializer)
    assert (job.get_status(), job.retries_left) == (JobStatus.FAILED, 0)
    assert "SETTLEKEEPER_BROKER_SECRET" in (job.latest_result().exc_string or "")
    assert redis_client.zcard("rq:scheduled:settlekeeper-settle") == 0
    assert redis_client.hget(keys.alert("broker-auth"), "state") == b"triggered"


async def test_item_4_the_listener_recovers_when_the_credentials_are_fixed(
    sandbox: Sandbox, session_redis_url: str, redis_client: redis.Redis, processes: Spawn
) -> None:
    """Refused, then accepted on a later try (the sandbox's secret changes to the one given): readiness and the
    gauge come back and the alert resolves."""
    env = environment(
        session_redis_url, sandbox.base_url, broker_secret="rotated", http_port="0",
        auth_retry_seconds=str(RETRY_SECONDS),
    )  # fmt: skip
    listener = await processes(["listen"], env)
    await listener.wait_for("broker_credentials_refused")
    runtime = sandbox.app[RUNTIME]  # the partner rotates the secret at Alpaca to the one deployed
    runtime.settings = runtime.settings.model_copy(update={"sandbox_secret": SecretStr("rotated")})
    await listener.wait_for("broker_credentials_accepted", within=RETRY_SECONDS + 5)
    await listener.wait_for("lease_acquired")

    async def ready() -> bool:
        return (await get(listener, "/readyz"))[0] == 200

    for _ in range(100):
        if await ready():
            break
        await asyncio.sleep(0.05)
    assert await ready()
    assert redis_client.hget(keys.alert("broker-auth"), "state") == b"resolved"


async def test_item_4_a_403_to_a_money_post_is_a_refusal_not_a_credentials_problem(sandbox: Sandbox) -> None:
    """A journal from an account without the cash is refused 403: a plain ClientError with Alpaca's words,
    while a 403 to a read (the key may not use the endpoint) is an AuthenticationError naming the variables."""
    async with BrokerClient(load_settings({}, broker_url=sandbox.base_url)) as client:
        body = {
            "from_account": await sandbox.account_id("8100000001"),  # a customer with no cash at all
            "to_account": await sandbox.account_id("7536050RF"),
            "entry_type": "JNLC",
            "amount": "5.00",
        }
        with pytest.raises(ClientError) as refused:
            await client.create_journal(body, "no-cash-1")
        assert (type(refused.value), refused.value.status) == (ClientError, 403)
        assert "SETTLEKEEPER_BROKER" not in str(refused.value)
        await sandbox.ok("POST", "/sandbox/faults", {"kind": "http_error", "status": 403, "path": "/v1/clock"})
        with pytest.raises(AuthenticationError, match="check SETTLEKEEPER_BROKER_KEY"):
            await client.clock()
