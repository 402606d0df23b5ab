"""The ``settlekeeper`` command: one subcommand per process kind.

Each command imports what it runs inside its own function, so ``settlekeeper listen`` loads the listener
and not the sandbox or the demo (a test checks ``sys.modules``).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIServer

import structlog
from aiohttp import web

from config.logging import configure_logging
from config.settings import Settings, load_settings, share_with_children
from funding.errors import ConfigError

log = structlog.get_logger(__name__)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="settlekeeper", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    sandbox = commands.add_parser("sandbox", help="run the local Broker API sandbox, seeded")
    sandbox.add_argument("--host", help="interface to bind (default: SETTLEKEEPER_SANDBOX_HOST)")
    sandbox.add_argument("--port", type=_port, help="port; 0 picks a free one (default: SETTLEKEEPER_SANDBOX_PORT)")
    sandbox.add_argument("--customers", type=int, default=10, help="customer accounts to seed")
    sandbox.add_argument("--speed", type=float, default=1.0, help="sandbox seconds per real second")
    sandbox.add_argument("--start", help="start the sandbox clock at this RFC 3339 instant")
    commands.add_parser("listen", help="read the event streams into Redis (leader-elected)")
    work = commands.add_parser("work", help="run an RQ worker on settlekeeper's queues (with the scheduler)")
    work.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    work.add_argument(
        "--worker-class",
        choices=("fork", "simple"),
        default="fork",
        help="fork (default: each job in its own process) or simple (in-process, for local runs)",
    )
    work.add_argument("--name", help="worker name (default: host and pid); name it after the pod in Kubernetes")
    work.add_argument(
        "--metrics-port",
        type=_port,
        help="serve the jobs' metrics (cluster-wide, from Redis) on this port; 0: off "
        "(default: SETTLEKEEPER_JOBS_METRICS_PORT)",
    )
    demo = commands.add_parser("demo", help="play an accelerated trading week: Redis, sandbox, listener, worker")
    demo.add_argument("--speed", type=_positive, help="sandbox seconds per real second in the day (default 1200)")
    demo.add_argument("--week-of", type=date.fromisoformat, help="a day of the week to play (default 2026-11-23)")
    demo.add_argument("--days", type=_positive_int, help="settlement deadlines to play (default: the whole week)")
    demo.add_argument("--log-dir", type=Path, help="where the processes' logs go (default: a new temp directory)")
    _oncall(commands)
    doctor = commands.add_parser(
        "doctor",
        help="check a deployment before it goes live: one line per check, exit 1 on any failure",
        epilog="example: settlekeeper doctor",
    )
    doctor.add_argument("--json", action="store_true", help="exact machine output")
    return parser


ONCALL = ("status", "pause", "resume", "settle", "cover", "audit", "intents", "alerts", "dead-letters")
"""The commands an operator runs against a deployment (cli/control.py); exit 0 fine, 1 a problem, 2 usage."""


def _oncall(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from cli.control import parse_day
    from cli.records import since_arg

    def command(name: str, help_text: str, example: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=help_text,
            description=f"{help_text}.",
            epilog=f"example: {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.add_argument("--json", action="store_true", help="exact machine output (amounts as decimal strings)")
        return sub

    status = command(
        "status",
        "what is due, what can pay it, the listener, the queues, the guardrails and the open alerts",
        "settlekeeper status --watch  (exit 1 when something needs a human before the next cutoff)",
    )
    status.add_argument("--watch", action="store_true", help="refresh until interrupted")
    status.add_argument("--every", type=_positive, default=5.0, help="seconds between refreshes (default 5)")
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
    cover.add_argument("--account", required=True, help="the customer account number")
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
    for sub in (settle, cover):
        sub.add_argument("--deadline", required=True, type=parse_day, help="the deadline (YYYY-MM-DD)")
        sub.add_argument("--dry-run", action="store_true", help="print what would be done; move nothing")
        sub.add_argument("--wait", type=_positive, default=120.0, help="seconds to wait for a worker (default 120)")


def _command(name: str) -> Any:
    """The function of an on-call command (cli/control.py, cli/records.py, cli/dead_letters.py)."""
    from cli import control, dead_letters, records

    name = name.replace("-", "_")
    return getattr(control, name, None) or getattr(records, name, None) or getattr(dead_letters, name)


def _usage_problem(args: argparse.Namespace) -> str | None:
    """What argparse cannot say: options that one action of a command requires."""
    action = getattr(args, "action", None)
    if args.command == "alerts" and action == "resolve" and not args.reason:
        return "--reason is required (it is audited and sent)"
    if args.command == "dead-letters" and action == "drop" and not (args.id and args.reason):
        return "drop needs the entry's id and --reason (kept in the audit)"
    if args.command == "dead-letters" and action == "retry" and not (args.id or args.all):
        return "retry needs the entry's id, or --all"
    return None


def _port(text: str) -> int:
    """A TCP port for ``--port``/``--metrics-port``: 0 (pick one, or off where documented) to 65535."""
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a port number from 0 to 65535, got {text!r}") from exc
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 0 to 65535, got {value}")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def demo_week(settings: Settings, args: argparse.Namespace) -> int:
    from demo import run as demo

    given = {name: getattr(args, name) for name in ("week_of", "speed", "days", "log_dir")}
    options = demo.DemoOptions(**{name: value for name, value in given.items() if value is not None})
    return asyncio.run(demo.run_demo(settings, options))


def run_worker(settings: Settings, args: argparse.Namespace) -> bool:
    """Serve the settle, cover and alert queues (with the scheduler: retries with an interval need it)."""
    from jobs.rq_worker import QUEUES, serve
    from store.clients import redis_url

    port = settings.jobs_metrics_port if args.metrics_port is None else args.metrics_port
    with redis_url(settings) as url:
        if settings.redis_url is None:  # an embedded Redis: the jobs must find it too
            share_with_children("redis_url", url)
        server = _serve_job_metrics(url, QUEUES, port) if port else None
        try:
            return serve(
                url, worker_class=args.worker_class, name=args.name, burst=args.burst, logging_level=settings.log_level
            )
        finally:
            if server is not None:
                server.shutdown()


def _serve_job_metrics(url: str, queues: Sequence[str], port: int) -> WSGIServer | None:
    """The jobs' /metrics, served by this (main) process from a thread, never by a job's process. A port
    that cannot be bound is logged and the worker runs on: jobs matter more than their metrics."""
    from jobs.job_metrics import serve_metrics
    from store.clients import sync_client

    try:
        server = serve_metrics(sync_client(url, socket_timeout=5), queues, port)
    except OSError as exc:
        log.error("jobs_metrics_not_served", port=port, error=str(exc))
        return None
    log.info("jobs_metrics_served", port=server.server_port)
    return server


async def run_listener(settings: Settings) -> None:
    from store.clients import redis_url
    from worker.listener import Listener

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    with redis_url(settings) as url:
        await Listener(settings, url).run(stop)


async def run_sandbox(settings: Settings, args: argparse.Namespace) -> None:
    """The sandbox (imported here only: ``listen`` and ``work`` never load it, and the image needs it not)."""
    from sandbox.app import create_app
    from sandbox.clock_control import SandboxClock
    from sandbox.state import SeedConfig

    start = datetime.fromisoformat(args.start) if args.start else None
    clock = SandboxClock(start, speed=args.speed)
    app = create_app(settings, SeedConfig(customers=args.customers), clock=clock)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    host = args.host or settings.sandbox_host
    port = settings.sandbox_port if args.port is None else args.port
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1] if runner.addresses else port
    base = f"http://{host}:{bound}"
    key = settings.sandbox_key.get_secret_value()
    print(f"settlekeeper sandbox listening on {base}", flush=True)
    print(f"  clock: {clock.now().isoformat()} (speed {args.speed}x); {args.customers} customers seeded")
    print(f"  credentials: HTTP Basic, key {key}, secret SETTLEKEEPER_SANDBOX_SECRET (never printed)")
    print('  try (with S set to the secret, "sandbox-secret" unless you changed it):', flush=True)
    print(f'    curl -s -u "{key}:$S" {base}/v1/accounts', flush=True)
    print(
        f"    curl -s -u \"{key}:$S\" -X POST {base}/v1/instant_funding -H 'Content-Type: application/json' "
        f'-d \'{{"account_no": "8100000001", "source_account_no": "7536050SI", "amount": "20.00"}}\'',
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("sandbox_stopping")
    await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"settlekeeper: {exc}", file=sys.stderr)
        return 2
    if args.command in (*ONCALL, "doctor"):  # their output is stdout; what they log goes to stderr
        from cli import control, doctor

        configure_logging(settings, sys.stderr)
        if args.command == "doctor":
            return doctor.doctor(settings, args)
        if (problem := _usage_problem(args)) is not None:
            print(f"settlekeeper {args.command}: {problem}", file=sys.stderr)
            return 2
        return control.run(settings, _command(args.command), args)
    if args.command == "sandbox":
        asyncio.run(run_sandbox(settings, args))
    elif args.command == "listen":
        asyncio.run(run_listener(settings))
    elif args.command == "work":
        run_worker(settings, args)
    elif args.command == "demo":
        return demo_week(settings, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
