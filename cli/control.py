"""The on-call commands that look and act: ``status``, ``pause``/``resume``, ``settle`` and ``cover`` now.

Each builds the jobs' own context (the same settings, Redis and Broker API as the processes), speaks through
:class:`cli.output.Out`, and returns an exit status: 0 fine, 1 a problem found, 2 usage or configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from typing import Any

from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from cli.output import OK, PROBLEM, USAGE, Out
from cli.status import gather
from cli.status_view import render
from config.settings import Settings
from funding.errors import ConfigError, SettlekeeperError
from jobs.cover import cover_amount
from jobs.registry import enqueue_manual
from jobs.runtime import JobContext, job_context
from jobs.settle_plan import preview
from store.clients import connect
from store.guardrails import clear_kill_switch, kill_switch_state, set_kill_switch

SUCCESS = ("done", "nothing_due", "covered", "no_debit")
"""Job outcomes after which an operator need do nothing more."""
Command = Callable[[JobContext, argparse.Namespace, Out], Awaitable[int]]


@asynccontextmanager
async def context(settings: Settings) -> AsyncIterator[JobContext]:
    if settings.redis_url is None:
        raise ConfigError("SETTLEKEEPER_REDIS_URL is not set: the commands read the Redis the processes use")
    connection = connect(settings.redis_url.get_secret_value())
    try:
        async with job_context(settings, connection) as ctx:
            yield ctx
    finally:
        connection.close()


def run(settings: Settings, command: Command, args: argparse.Namespace) -> int:
    """Run one command; a configuration problem or an unreachable Redis/Broker API is said in one line (2/1)."""
    out = Out(json=bool(getattr(args, "json", False)))

    async def main() -> int:
        async with context(settings) as ctx:
            return await command(ctx, args, out)

    try:
        return asyncio.run(main())
    except ConfigError as exc:
        out.line(f"settlekeeper: {exc}")
        return USAGE
    except SettlekeeperError as exc:
        out.line(f"settlekeeper: {type(exc).__name__}: {exc}")
        return PROBLEM


async def status(ctx: JobContext, args: argparse.Namespace, out: Out) -> int:
    while True:
        found = await gather(ctx)
        if out.json:
            out.data(found.to_json())
        else:
            if args.watch:
                out.stream.write("\033[2J\033[H" if out.colour else "\n")
            render(found, out)
        if not args.watch:
            return PROBLEM if found.problems else OK
        await asyncio.sleep(args.every)


def operator() -> str:
    """Who is at the keyboard, for the audit: user@host."""
    return f"{getpass.getuser()}@{socket.gethostname()}"


async def pause(ctx: JobContext, args: argparse.Namespace, out: Out) -> int:
    since = datetime.now(UTC).isoformat(timespec="seconds")
    by = args.by or operator()
    await set_kill_switch(ctx.redis, args.reason, by, since)
    await ctx.ledger.note("kill_switch_set", "control", "kill-switch", reason=args.reason, by=by)
    state = await kill_switch_state(ctx.redis)
    if out.json:
        out.data({"paused": True, "kill_switch": state})
    else:
        out.line(f"PAUSED: no money moves until `settlekeeper resume` (by {by}: {args.reason})", "red")
    return OK


async def resume(ctx: JobContext, args: argparse.Namespace, out: Out) -> int:
    before = await kill_switch_state(ctx.redis)
    was = await clear_kill_switch(ctx.redis)
    by = args.by or operator()
    await ctx.ledger.note("kill_switch_cleared", "control", "kill-switch", by=by, was=(before or {}).get("reason", ""))
    if out.json:
        out.data({"paused": False, "was_paused": was, "kill_switch": None})
    else:
        out.line("resumed: money moves again" if was else "not paused: nothing to resume", "green")
    return OK


async def settle(ctx: JobContext, args: argparse.Namespace, out: Out) -> int:
    deadline = args.deadline
    if args.dry_run:
        plan = await preview(ctx, deadline)
        if out.json:
            out.data(plan)
        else:
            _show_plan(plan, out)
        return PROBLEM if plan["left"] or plan["kill_switch"] else OK
    job_id = enqueue_manual(ctx.rq, "settle", deadline.isoformat())
    return await _follow(ctx, job_id, args, out)


def _show_plan(plan: dict[str, Any], out: Out) -> None:
    out.line(f"dry run: nothing moves. {plan['deadline']}: {plan['due_transfers']} transfers, {plan['due_amount']} due")
    out.line(f"  SI holds {plan['si_cash']}; RF can give {plan['rf_available']}; journal RF → SI {plan['fund']}")
    out.table(
        ["batch", "transfers", "amount"], [[n, b["transfers"], b["amount"]] for n, b in enumerate(plan["batches"], 1)]
    )
    for row in plan["left"]:
        out.line(f"  left unsettled: {row['transfer_id']} {row['account_no']} {row['amount']}: {row['why']}", "red")
    if plan["kill_switch"]:
        out.line(f"  the kill switch is on ({plan['kill_switch']}): a real run would move nothing", "red")
    modes = plan["modes"]
    if modes["settle"] != "on" or modes["fund"] != "on":
        out.line(f"  guardrails: settle {modes['settle']}, fund {modes['fund']}: a real run would not move all of it")


async def cover(ctx: JobContext, args: argparse.Namespace, out: Out) -> int:
    if args.dry_run:
        cash, amount = await cover_amount(ctx, await ctx.account_id(args.account), args.account, args.deadline)
        found = {"account_no": args.account, "deadline": str(args.deadline), "cash": str(cash), "cover": str(amount)}
        if out.json:
            out.data(found)
        else:
            out.line(f"dry run: nothing moves. {args.account} has cash {cash}; a cover would journal RF → it {amount}")
        return OK
    job_id = enqueue_manual(ctx.rq, "cover", args.deadline.isoformat(), args.account or "")
    return await _follow(ctx, job_id, args, out)


async def _follow(ctx: JobContext, job_id: str, args: argparse.Namespace, out: Out) -> int:
    """Wait for the manual job (a worker runs it) and print its report; say so when no worker took it."""
    waited = 0.0
    while True:
        job = Job.fetch(job_id, connection=ctx.rq, serializer=JSONSerializer)
        state = job.get_status(refresh=True)
        if state in (JobStatus.FINISHED, JobStatus.FAILED) or waited >= args.wait:
            break
        await asyncio.sleep(0.2)
        waited += 0.2
    report = job.return_value() if state == JobStatus.FINISHED else None
    if out.json:
        out.data({"job_id": job_id, "status": str(state), "report": report})
    elif report is None:
        out.line(f"{job_id}: {state} after {args.wait:.0f} s (is `settlekeeper work` running?)", "red")
    else:
        out.line(f"{job_id}: {report.get('outcome')}")
        for name, value in report.items():
            if name != "left":
                out.line(f"  {name}: {value}")
        for row in report.get("left") or []:
            out.line(f"  left unsettled: {row['transfer_id']} {row['amount']}: {row['why']}", "red")
    good = (
        report is not None
        and not report.get("left")
        and not report.get("pending")  # the sweep's count of covers still pending
        and report.get("outcome", "done") in SUCCESS
    )
    return OK if good else PROBLEM


def parse_day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD, got {text!r}") from None
