"""The on-call commands of ``settlekeeper``: their parsers and their dispatch (exit 0 fine, 1 a problem found,
2 usage or configuration; docs/operations.md "On call")."""

from __future__ import annotations

import argparse
import functools
import sys
from typing import TYPE_CHECKING, Any

from cli.control import parse_day, run
from cli.interest import month_arg
from cli.output import USAGE, positive
from cli.records import since_arg
from cli.replay import since_point
from config.settings import Settings

NAMES = (
    "status",
    "pause",
    "resume",
    "settle",
    "cover",
    "audit",
    "intents",
    "alerts",
    "dead-letters",
    "interest",
    "forecast",
    "statement",
    "replay",
    "doctor",
)
"""The commands an operator runs against a deployment; exit 0 fine, 1 a problem, 2 usage."""


if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]


def add_parsers(commands: Subparsers) -> None:
    """Every on-call command, each with its --help example and --json."""
    _act(commands)
    _read(commands)
    doctor = _sub(
        commands,
        "doctor",
        "check a deployment before it goes live: one line per check",
        "settlekeeper doctor --send-test-alert",
    )
    doctor.add_argument(
        "--send-test-alert",
        action="store_true",
        help="send an info message to Slack and PagerDuty (resolved there at once) and fail if one is refused",
    )


def _sub(commands: Subparsers, name: str, help_text: str, example: str) -> argparse.ArgumentParser:
    sub = commands.add_parser(
        name,
        help=help_text,
        description=f"{help_text}.",
        epilog=f"example: {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub.add_argument("--json", action="store_true", help="exact machine output (amounts as decimal strings)")
    return sub


def _act(commands: Subparsers) -> None:
    """The commands that look and act: status, pause, resume, settle, cover."""
    command = functools.partial(_sub, commands)

    status = command(
        "status",
        "what is due, what can pay it, the listener, the queues, the guardrails and the open alerts",
        "settlekeeper status --watch  (exit 1 when something needs a human before the next cutoff)",
    )
    status.add_argument("--watch", action="store_true", help="refresh until interrupted")
    status.add_argument("--every", type=positive, default=5.0, help="seconds between refreshes (default 5)")
    pause = command(
        "pause", "stop every money movement (the kill switch), audited", 'settlekeeper pause --reason "RF wire late"'
    )
    pause.add_argument("--reason", required=True, help="why: shown by status and in every alert it causes")
    pause.add_argument("--by", help="who (default: user@host)")
    resume = command("resume", "let money move again, audited", "settlekeeper resume")
    resume.add_argument("--by", help="who (default: user@host)")
    settle = command(
        "settle",
        "run the settle phase for a deadline now (the same job, a manual job id)",
        "settlekeeper settle --deadline 2026-11-24 --dry-run",
    )
    cover = command(
        "cover",
        "cover one account's debit now (the same job, a manual job id)",
        "settlekeeper cover --account 8100000001 --deadline 2026-11-24",
    )
    cover.add_argument("--account", help="the customer account number (none: the sweep of every canceled one)")
    replay = command(
        "replay",
        "read a stream's history again from an id or a time (safe: the store de-duplicates)",
        "settlekeeper replay --stream activities --since 2026-11-24",
    )
    replay.add_argument("--stream", required=True, choices=("activities", "journals", "nta"))
    replay.add_argument("--since", required=True, type=since_point, help="a ULID, a date or an RFC 3339 date-time")
    for sub in (settle, cover):
        sub.add_argument("--deadline", required=True, type=parse_day, help="the deadline (YYYY-MM-DD)")
        sub.add_argument("--dry-run", action="store_true", help="print what would be done; move nothing")
        sub.add_argument("--wait", type=positive, default=120.0, help="seconds to wait for a worker (default 120)")


def _read(commands: Subparsers) -> None:
    """The commands that read the record: audit, intents, alerts, dead-letters, interest."""
    command = functools.partial(_sub, commands)

    audit = command(
        "audit",
        "the money movements and decisions as a timeline, with Alpaca's ids",
        "settlekeeper audit --deadline 2026-11-24 --account 8100000001",
    )
    audit.add_argument("--deadline", type=parse_day, help="only entries of this deadline")
    audit.add_argument("--account", help="only entries naming this account")
    audit.add_argument("--since", type=since_arg, help="only entries at or after this date or RFC 3339 instant")
    command("intents", "money movements not final (planned or sent): what the next run resumes", "settlekeeper intents")
    alerts = command(
        "alerts",
        "open alerts (age, severity, where delivered); `alerts resolve KEY --reason`",
        'settlekeeper alerts resolve dead-letters --reason "reviewed, replayed"',
    )
    alerts.add_argument("action", nargs="?", choices=("list", "resolve"), default="list")
    alerts.add_argument("key", nargs="?", help="with resolve: the alert's key (as `alerts` lists it)")
    alerts.add_argument("--reason", help="with resolve: why it is over (audited, sent to the sinks)")
    alerts.add_argument("--by", help="who (default: user@host)")
    dead = command(
        "dead-letters",
        "what the listener could not read; `retry ID|--all`, `drop ID --reason`",
        "settlekeeper dead-letters retry --all",
    )
    dead.add_argument("action", nargs="?", choices=("list", "retry", "drop"), default="list")
    dead.add_argument("id", nargs="?", help="with retry or drop: the entry's id (as the list shows it)")
    dead.add_argument("--all", action="store_true", help="with retry: every dead letter (of --stream)")
    dead.add_argument("--stream", choices=("activities", "journals", "nta", "rest"), help="only this stream's")
    dead.add_argument("--reason", help="with drop: why (kept in the audit)")
    dead.add_argument("--by", help="who (default: user@host)")
    interest = command(
        "interest",
        "the late interest Alpaca will invoice for a month, per transfer; margin estimates",
        "settlekeeper interest --month 2026-11 --csv > interest-2026-11.csv",
    )
    interest.add_argument("--month", required=True, type=month_arg, help="the month (YYYY-MM)")
    interest.add_argument("--csv", action="store_true", help="one CSV row per charge (for the invoice)")
    forecast = command(
        "forecast",
        "what the next deadlines will ask of RF, and the wire to send by when (exit 1 when one is needed)",
        "settlekeeper forecast --days 5 --json",
    )
    day = command(
        "statement",
        "the end-of-day statement of a deadline: the day's totals after the cancellations (the 20:15 ET message)",
        "settlekeeper statement --day 2026-11-24 --json > statement-2026-11-24.json",
    )
    day.add_argument("--day", type=parse_day, help="the deadline (default: today, or the last trading day)")
    forecast.add_argument("--days", type=int, default=5, choices=range(1, 21), metavar="N", help="deadlines (1-20)")


def _command(name: str) -> Any:
    """The function of an on-call command (cli/control.py, cli/records.py, cli/dead_letters.py)."""
    from cli import control, dead_letters, forecast, interest, records, replay, statement

    name = name.replace("-", "_")
    for module in (control, records, dead_letters, interest, forecast, statement, replay):
        if hasattr(module, name):
            return getattr(module, name)
    raise KeyError(name)


def _usage_problem(args: argparse.Namespace) -> str | None:
    """What argparse cannot say: options that one action of a command requires."""
    action = getattr(args, "action", None)
    if args.command == "alerts" and action == "resolve" and not args.reason:
        return "--reason is required (it is audited and sent)"
    if args.command == "dead-letters" and action == "drop" and not (args.id and args.reason):
        return "drop needs the entry's id and --reason (kept in the audit)"
    if args.command == "cover" and args.dry_run and not args.account:
        return "--dry-run needs --account"
    if args.command == "dead-letters" and action == "retry" and not (args.id or args.all):
        return "retry needs the entry's id, or --all"
    return None


def dispatch(settings: Settings, args: argparse.Namespace) -> int:
    if args.command == "doctor":
        from cli.doctor import doctor

        return doctor(settings, args)
    if (problem := _usage_problem(args)) is not None:
        print(f"settlekeeper {args.command}: {problem}", file=sys.stderr)
        return USAGE
    return run(settings, _command(args.command), args)
