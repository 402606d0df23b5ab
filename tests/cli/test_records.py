"""``audit``, ``intents`` and ``alerts`` (and ``alerts resolve``) against a real Redis, after a real cover whose
journal waits for approval (default JNLC limits)."""

from __future__ import annotations

import json
from collections.abc import Callable

import redis

from jobs.registry import ALERT_QUEUE
from store import keys
from tests.cli.test_oncall import cli_env, settlekeeper
from tests.support.cli import finish, start
from tests.support.cover import ACCOUNT, debit_of_400, run_cover
from tests.support.jobs import RunWorker
from tests.support.listener import eventually
from tests.support.sandbox import Sandbox, SandboxFactory

JobEnv = Callable[..., None]


async def pending_cover(sandbox: Sandbox, job_env: JobEnv, run_worker: RunWorker, redis_client: redis.Redis) -> str:
    """A cover journal of 400.00 sent and pending at Alpaca (over the $50 JNLC limit); returns the deadline."""
    job_env(sandbox)
    deadline = await debit_of_400(sandbox)
    assert (await run_cover(redis_client, run_worker, ACCOUNT, deadline))["outcome"] == "pending"
    return deadline


async def test_audit_and_intents_show_the_cover_in_flight_with_alpacas_id(
    sandbox: Sandbox, job_env: JobEnv, run_worker: RunWorker, redis_client: redis.Redis, session_redis_url: str
) -> None:
    """audit lists the cover's steps with the journal's id; intents shows it sent and pending (exit 1)."""
    deadline = await pending_cover(sandbox, job_env, run_worker, redis_client)
    env = cli_env(sandbox, session_redis_url)
    [journal] = await sandbox.ok("GET", "/v1/journals")

    code, out, _ = await settlekeeper("audit", "--deadline", deadline, "--account", ACCOUNT, env=env)
    lines = out.splitlines()
    assert code == 0
    events = [line.split()[1] for line in lines[2:]]
    assert events[:3] == ["cover_planned", "cover_sent", "cover_accepted"]
    assert any("cover_accepted" in line and journal["id"][:8] in line for line in lines)
    code, out, _ = await settlekeeper("audit", "--deadline", deadline, "--json", env=env)
    accepted = next(row for row in json.loads(out) if row["event"] == "cover_accepted")
    assert (accepted["alpaca_id"], accepted["amount"]) == (journal["id"], "400.00")

    code, out, _ = await settlekeeper("intents", env=env)
    assert code == 1
    assert out.splitlines()[0] == "1 intents not final: the next run of their deadline resumes them"
    row = next(line for line in out.splitlines() if line.strip().startswith(f"cover-{ACCOUNT}-{deadline}"))
    assert row.split()[1:3] == ["sent", "400.00"]
    assert "pending" in row


async def test_alerts_lists_the_open_alert_and_resolve_closes_it_everywhere(
    sandbox: Sandbox, job_env: JobEnv, run_worker: RunWorker, redis_client: redis.Redis, session_redis_url: str
) -> None:
    """alerts shows journal_pending (warning, where it went); resolve closes it, queues the resolve for the
    sinks and audits who and why; then no alert is open."""
    deadline = await pending_cover(sandbox, job_env, run_worker, redis_client)
    env = cli_env(sandbox, session_redis_url)
    key = f"journal-pending-cover-{ACCOUNT}-{deadline}"

    code, out, _ = await settlekeeper("alerts", "--json", env=env)
    [alert] = json.loads(out)
    assert (code, alert["dedup_key"], alert["kind"], alert["severity"]) == (0, key, "journal_pending", "warning")
    assert alert["delivered"] == "slack unconfigured, pagerduty unconfigured"
    _, out, _ = await settlekeeper("alerts", env=env)
    assert out.splitlines()[0] == "1 open alerts"
    assert any(
        line.startswith(f"  {key}: journal cover-{ACCOUNT}-{deadline} of 400.00 is still pending")
        for line in out.splitlines()
    )

    code, _, err = await settlekeeper("alerts", "resolve", key, env=env)
    assert (code, "--reason is required" in err) == (2, True)
    queued_before = redis_client.llen(f"rq:queue:{ALERT_QUEUE}")
    code, out, _ = await settlekeeper(
        "alerts", "resolve", key, "--reason", "approved by Alpaca ops", "--by", "ada", env=env
    )
    assert (code, out.strip()) == (
        0,
        f"{key}: resolved (journal_pending); Slack and PagerDuty are told by the alert queue",
    )
    assert redis_client.hget(keys.alert(key), "state") == b"resolved"
    assert redis_client.llen(f"rq:queue:{ALERT_QUEUE}") == queued_before + 1  # the resolve, for the sinks
    noted = [row for _, row in redis_client.xrange(keys.AUDIT) if row[b"event"] == b"alert_resolved_by_hand"]
    assert json.loads(noted[0][b"facts"]) == {
        "alert_kind": "journal_pending",
        "by": "ada",
        "reason": "approved by Alpaca ops",
    }
    code, out, _ = await settlekeeper("alerts", "--json", env=env)
    assert json.loads(out) == []
    code, out, _ = await settlekeeper("alerts", "resolve", key, "--reason", "again", env=env)
    assert (code, out.strip()) == (1, f"{key}: not an open alert (resolved)")


async def test_cover_without_an_account_reruns_the_sweep(
    make_sandbox: SandboxFactory,
    job_env: JobEnv,
    run_worker: RunWorker,
    redis_client: redis.Redis,
    session_redis_url: str,
) -> None:
    """`cover --deadline D` with no account is the 20:05 sweep now: every account canceled that day, covered."""
    sandbox = await make_sandbox(jnlc_transaction_limit="1000000", jnlc_daily_limit="10000000")
    job_env(sandbox)
    deadline = await debit_of_400(sandbox)
    proc = await start("cover", "--deadline", deadline, env=cli_env(sandbox, session_redis_url))

    async def queued() -> bool:
        return bool(redis_client.keys("rq:job:manual-sweep-*"))

    await eventually(queued, within=20)
    assert await run_worker()
    out, _ = await finish(proc, within=60)
    lines = out.decode().splitlines()
    assert proc.returncode == 0, lines
    assert "  accounts: 1" in lines
    assert "  covered: 1" in lines
    assert await sandbox.cash(ACCOUNT) == 0
