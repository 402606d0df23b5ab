"""The on-call commands as an operator runs them (a real subprocess, a real Redis, the sandbox over HTTP): at
12:40 ET with transfers unsettled, see them, pause, watch the phases move nothing, resume and settle by hand."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
import redis
from rq.job import Job
from rq.serializers import JSONSerializer

from cli.commands import NAMES
from cli.main import _parser, main
from funding.calendar import ET
from store import keys
from tests.support.cli import clean_env, finish, start
from tests.support.jobs import JOB_ENV, RunWorker
from tests.support.listener import ListenerFactory, eventually
from tests.support.sandbox import Sandbox, SandboxFactory
from tests.support.scenario import until_connected
from tests.support.settle import create_transfers, et, journals, settlements, total, transfers

JobEnv = Callable[..., None]


def cli_env(sandbox: Sandbox, redis_url: str) -> dict[str, str]:
    return clean_env(SETTLEKEEPER_BROKER_URL=sandbox.base_url, SETTLEKEEPER_REDIS_URL=redis_url, **JOB_ENV)


async def settlekeeper(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    """Run ``settlekeeper <args>`` to its end: (exit status, stdout, stderr)."""
    proc = await start(*args, env=env)
    out, err = await finish(proc, within=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def status_json(env: dict[str, str]) -> tuple[int, dict[str, Any]]:
    code, out, err = await settlekeeper("status", "--json", env=env)
    assert code in (0, 1), err
    return code, json.loads(out)


async def test_at_1240_see_pause_resume_and_settle_by_hand(
    make_sandbox: SandboxFactory,
    job_env: JobEnv,
    run_worker: RunWorker,
    redis_client: redis.Redis,
    session_redis_url: str,
    start_listener: ListenerFactory,
) -> None:
    """status shows what is due and the minutes left; paused, the 12:30 and 1 PM phases move no money and status
    says PAUSED first; resumed, `settle --deadline` settles everything before 1 PM."""
    sandbox = await make_sandbox(settlement_delay_seconds=0)
    job_env(sandbox)
    env = cli_env(sandbox, session_redis_url)
    created = await create_transfers(sandbox, ["120.00", "80.50", "42.42"])
    deadline = created[0]["deadline"]
    owed = total(row["amount"] for row in created)
    await sandbox.set_clock(et(deadline, 12, 40))
    running = await start_listener(sandbox)
    await until_connected(running)

    code, seen = await status_json(env)
    [due] = [d for d in seen["deadlines"] if d["deadline"] == deadline]
    assert (due["unsettled_count"], Decimal(due["unsettled_amount"]), due["minutes_to_cutoff"]) == (3, owed, 20)
    assert (seen["paused"], seen["kill_switch"], code) == (False, None, 1)  # unsettled 20 minutes before 1 PM
    code, human, _ = await settlekeeper("status", env=env)
    assert human.splitlines()[0].startswith("settlekeeper at Tue 2026-11-24 12:40 ET: money moves")
    assert any(deadline in line and "242.92" in line and "20m" in line for line in human.splitlines())
    assert "3 transfers still unsettled 20 minutes before the 1 PM ET cutoff" in human

    code, paused, _ = await settlekeeper("pause", "--reason", "RF wire under review", "--by", "ada", env=env)
    assert (code, paused.strip()) == (
        0,
        "PAUSED: no money moves until `settlekeeper resume` (by ada: RF wire under review)",
    )
    ledger_before = (await sandbox.ok("GET", "/sandbox/ledger"))["entries"]

    async def caught_up() -> bool:  # the listener enqueues the phases it missed: 12:00 and 12:30 settle, the ladder
        return bool(redis_client.exists(f"rq:job:phase-settle-retry-{deadline}"))

    await eventually(caught_up, within=20)
    await run_worker()
    retry = Job.fetch(f"phase-settle-retry-{deadline}", connection=redis_client, serializer=JSONSerializer)
    assert retry.return_value()["outcome"] == "killed"
    assert (await sandbox.ok("GET", "/sandbox/ledger"))["entries"] == ledger_before  # not a cent moved
    assert (await journals(sandbox), await settlements(sandbox)) == ([], [])
    code, seen = await status_json(env)
    assert (seen["paused"], seen["kill_switch"]["reason"], seen["kill_switch"]["by"], code) == (
        True, "RF wire under review", "ada", 1
    )  # fmt: skip
    _, human, _ = await settlekeeper("status", env=env)
    assert human.splitlines()[0].startswith("PAUSED: no money moves (by ada since ")

    await running.halt()  # from here the operator settles by hand (the listener's guard would do it too)
    code, resumed, _ = await settlekeeper("resume", env=env)
    assert (code, resumed.strip()) == (0, "resumed: money moves again")
    proc = await start("settle", "--deadline", deadline, env=env)

    async def queued() -> bool:
        return bool(redis_client.keys("rq:job:manual-settle-*"))

    await eventually(queued, within=20)
    assert await run_worker()
    out, _ = await finish(proc, within=60)
    assert proc.returncode == 0, out
    assert out.decode().splitlines()[0].endswith(": done")
    assert {row["status"] for row in await transfers(sandbox, created)} == {"COMPLETED"}
    [settlement] = await settlements(sandbox)
    assert datetime.fromisoformat(settlement["completed_at"]) < datetime(2026, 11, 24, 13, 0, tzinfo=ET)
    audit = [row for _, row in redis_client.xrange(keys.AUDIT)]
    events = [row[b"event"].decode() for row in audit if row.get(b"key") == b"kill-switch"]
    assert events == ["kill_switch_set", "kill_switch_cleared"]


async def test_settle_dry_run_prints_the_plan_and_moves_nothing(
    make_sandbox: SandboxFactory, job_env: JobEnv, session_redis_url: str, redis_client: redis.Redis
) -> None:
    """--dry-run shows the journal RF → SI, the batches and what RF short would leave, and moves nothing."""
    sandbox = await make_sandbox(rf_balance="150.00")
    job_env(sandbox)
    created = await create_transfers(sandbox, ["120.00", "80.50"])
    deadline = created[0]["deadline"]
    await sandbox.set_clock(et(deadline, 12))
    env = cli_env(sandbox, session_redis_url)
    code, out, _ = await settlekeeper("settle", "--deadline", deadline, "--dry-run", env=env)
    lines = out.splitlines()
    assert code == 1  # something would be left
    assert lines[0] == f"dry run: nothing moves. {deadline}: 2 transfers, 200.50 due"
    assert "journal RF → SI 80.50" in lines[1]  # RF pays the smaller first; 120.00 is left
    assert any(line.startswith("  left unsettled:") and "120.00" in line for line in lines)
    code, out, _ = await settlekeeper("settle", "--deadline", deadline, "--dry-run", "--json", env=env)
    plan = json.loads(out)
    assert (plan["fund"], plan["batches"], len(plan["left"])) == ("80.50", [{"transfers": 1, "amount": "80.50"}], 1)
    assert (await journals(sandbox), await settlements(sandbox)) == ([], [])
    assert redis_client.xlen(keys.AUDIT) == 0  # not even a dry-run intent is written


async def test_usage_and_configuration_errors_exit_2_in_one_line(sandbox: Sandbox) -> None:
    """A missing --reason is a usage error (2); no SETTLEKEEPER_REDIS_URL is said in one line (2)."""
    code, _, err = await settlekeeper("pause", env=clean_env())
    assert (code, "--reason" in err) == (2, True)
    code, out, _ = await settlekeeper("status", env=clean_env(SETTLEKEEPER_BROKER_URL=sandbox.base_url))
    assert (code, out.strip()) == (
        2, "settlekeeper: SETTLEKEEPER_REDIS_URL is not set: the commands read the Redis the processes use"
    )  # fmt: skip


@pytest.mark.parametrize("name", NAMES)
def test_every_command_has_help_with_an_example(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`settlekeeper <command> --help` exits 0 and shows an example of that command, and --json is offered."""
    with pytest.raises(SystemExit) as done:
        main([name, "--help"])
    shown = capsys.readouterr().out
    assert done.value.code == 0
    assert f"example: settlekeeper {name}" in shown
    assert "--json" in shown


def test_every_subcommand_is_dispatched() -> None:
    """The parser's subcommands are the processes and the on-call commands, each dispatched (none falls through)."""
    commands = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert set(commands.choices) == {"sandbox", "listen", "work", "demo", "chaos", *NAMES}
