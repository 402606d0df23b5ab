"""``bench/run``: every benchmark on this machine, one table.

    bench/run [--quick] [--only ingest,cover,settle,redis]

The measured process runs on CPU 0, the sandbox and Redis on CPU 1 (each group starts its own, so no figure
inherits another's memory). Every figure's baseline is measured in the same run. ``--quick`` runs the same
figures at smaller sizes (targets scaled where they depend on size) in under 5 minutes; the full run, under 20.
The last line reads ``bench: <n> figures, <m> met, <k> missed``; the exit status is 0 unless a group of
benchmarks could not run (the others still do). A wrong outcome (a transfer left unsettled, a journal twice)
makes its figure ``missed``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable

from bench import cover, ingest, redis_cost, settle_day
from bench.common import redis_server, sandbox
from bench.table import Figure, machine, render

SIZES = {
    "full": {
        "ingest": ingest.Sizes(events=1_000_000, transfers=2_000, naive_events=20_000),
        "cover": cover.Sizes(cancellations=1_000, storm_transfers=10_000, storm_accounts=5_000),
        "settle": settle_day.Sizes(transfers=1_000_000, customers=100_000, baseline_sample=2_000),
        "redis": 100_000,
    },
    "quick": {
        "ingest": ingest.Sizes(events=200_000, transfers=2_000, naive_events=10_000),
        "cover": cover.Sizes(cancellations=300, storm_transfers=2_000, storm_accounts=1_000),
        "settle": settle_day.Sizes(transfers=200_000, customers=20_000, baseline_sample=1_000),
        "redis": 20_000,
    },
    "smoke": {  # tests/test_bench.py: that every benchmark still runs, not how fast
        "ingest": ingest.Sizes(events=5_000, transfers=50, naive_events=1_000),
        "cover": cover.Sizes(cancellations=20, storm_transfers=40, storm_accounts=20),
        "settle": settle_day.Sizes(transfers=3_000, customers=300, baseline_sample=50),
        "redis": 1_000,
    },
}
GROUPS = ("ingest", "cover", "settle", "redis")


async def _ingest(sizes: dict[str, object]) -> list[Figure]:
    with redis_server() as url, sandbox(200) as (_, base):
        return await ingest.measure(base, url, sizes["ingest"])  # type: ignore[arg-type]


async def _cover(sizes: dict[str, object]) -> list[Figure]:
    with redis_server() as url, sandbox(10) as (_, base):
        figures = await cover.latency(base, url, sizes["cover"])  # type: ignore[arg-type]
        return figures + await cover.storm(base, url, sizes["cover"])  # type: ignore[arg-type]


async def _settle(sizes: dict[str, object]) -> list[Figure]:
    with redis_server() as url, sandbox(10) as (proc, base):
        return await settle_day.measure(base, proc.pid, url, sizes["settle"])  # type: ignore[arg-type]


async def _redis(sizes: dict[str, object]) -> list[Figure]:
    with redis_server() as url:
        figures, breakdown = await asyncio.to_thread(redis_cost.measure, url, sizes["redis"])  # type: ignore[arg-type]
    print("Redis bytes per transfer, by key: " + ", ".join(f"{name} {size:,.0f}" for name, size in breakdown))
    return figures


RUNS: dict[str, Callable[[dict[str, object]], Awaitable[list[Figure]]]] = {
    "ingest": _ingest,
    "cover": _cover,
    "settle": _settle,
    "redis": _redis,
}


async def main(args: argparse.Namespace) -> int:
    scale = "smoke" if args.smoke else "quick" if args.quick else "full"
    sizes = SIZES[scale]
    figures: list[Figure] = []
    failed: list[str] = []
    started = time.perf_counter()
    for group in args.only:
        began = time.perf_counter()
        print(f"-- {group} ...", flush=True)
        try:
            found = await RUNS[group](sizes)
        except (Exception, SystemExit) as exc:  # the other groups still run; the exit status says it failed
            failed.append(group)
            print(f"-- {group}: could not run: {type(exc).__name__}: {exc}", flush=True)
            continue
        figures += found
        for figure in found:
            print(f"   {figure.name}: {figure.value:,.2f} {figure.unit} ({'met' if figure.met else 'missed'})")
        print(f"-- {group}: {time.perf_counter() - began:.0f} s", flush=True)
    print(f"\nbench run: {time.perf_counter() - started:.0f} s ({scale} sizes)\n")
    print(render(figures, machine()))
    if failed:
        print(f"bench: could not run {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes, the same figures (under 5 minutes)")
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--only",
        type=lambda text: [g for g in text.split(",") if g],
        default=list(GROUPS),
        help=f"a comma-separated subset of {', '.join(GROUPS)}",
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.only) - set(GROUPS))
    if unknown:
        parser.error(f"unknown group(s) {', '.join(unknown)}: choose from {', '.join(GROUPS)}")
    return args


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse(sys.argv[1:]))))
