"""The ``settlekeeper`` command: one subcommand per process kind.

Each command imports what it runs inside its own function, so ``settlekeeper listen`` loads the listener
and not the sandbox or the demo (a test checks ``sys.modules``).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import signal
import sys
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from wsgiref.simple_server import WSGIServer

import structlog
from aiohttp import web

from cli.output import positive
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
    demo.add_argument("--speed", type=positive, help="sandbox seconds per real second in the day (default 1200)")
    demo.add_argument("--week-of", type=date.fromisoformat, help="a day of the week to play (default 2026-11-23)")
    demo.add_argument("--days", type=_positive_int, help="settlement deadlines to play (default: the whole week)")
    demo.add_argument("--log-dir", type=Path, help="where the processes' logs go (default: a new temp directory)")
    chaos = commands.add_parser(
        "chaos",
        help="play trading days with processes killed, Redis restarted and Alpaca failing; check the invariants",
        description="exit 0 only when every invariant holds; the last line sums up the run",
        epilog="example: settlekeeper chaos --days 20 --seed 7",
    )
    chaos.add_argument("--days", type=_positive_int, default=3, help="trading days to play (default 3)")
    chaos.add_argument("--seed", type=int, help="replay a run: its seed is printed first (default: a new one)")
    chaos.add_argument("--workers", type=_positive_int, default=2, help="RQ worker processes (default 2)")
    chaos.add_argument("--log-dir", type=Path, help="where the processes' logs go (default: a new temp directory)")
    from cli import commands as oncall

    oncall.add_parsers(commands)
    return parser


def _port(text: str) -> int:
    """A TCP port for ``--port``/``--metrics-port``: 0 (pick one, or off where documented) to 65535."""
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a port number from 0 to 65535, got {text!r}") from exc
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 0 to 65535, got {value}")
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


def chaos_days(settings: Settings, args: argparse.Namespace) -> int:
    from chaos.run import ChaosOptions, run_chaos

    options = ChaosOptions(days=args.days, seed=args.seed, workers=args.workers, log_dir=args.log_dir)
    return asyncio.run(run_chaos(settings, options))


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


STAND_INS = ("sandbox", "demo", "chaos")
"""The commands whose package the container image leaves out (deploy/Dockerfile)."""


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"settlekeeper: {exc}", file=sys.stderr)
        return 2
    from cli import commands as oncall

    if args.command in oncall.NAMES:  # their output is stdout; what they log goes to stderr
        configure_logging(settings, sys.stderr)
        return oncall.dispatch(settings, args)
    configure_logging(settings)
    if args.command in STAND_INS and importlib.util.find_spec(args.command) is None:
        print(
            f"settlekeeper: {args.command} is not in this installation (the image holds the runtime only): "
            "run it from a checkout",
            file=sys.stderr,
        )
        return 2
    if args.command == "sandbox":
        asyncio.run(run_sandbox(settings, args))
    elif args.command == "listen":
        asyncio.run(run_listener(settings))
    elif args.command == "work":
        run_worker(settings, args)
    elif args.command == "demo":
        return demo_week(settings, args)
    elif args.command == "chaos":
        return chaos_days(settings, args)
    else:  # a subcommand with a parser but no dispatch: a bug, said loudly
        raise AssertionError(f"settlekeeper {args.command} has no dispatch")
    return 0


if __name__ == "__main__":
    sys.exit(main())
