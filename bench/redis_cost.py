"""Redis memory per tracked transfer: every key the store writes for it, as the listener records it.

``N`` executed transfers (one deadline, a tenth as many accounts) are recorded through
:meth:`store.transfers.TransferStore.record`, the listener's own write step (outbox actions included);
the figure is the growth of Redis's ``used_memory`` divided by ``N``. Baseline, the same way in the same
Redis: one plain ``SET`` per transfer of its JSON as the Broker API returns it. ``profile`` breaks the cost
down by key (``MEMORY USAGE`` of one transfer's keys, and of the shared indexes divided by ``N``).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, date, datetime
from typing import Any

import redis
import redis.asyncio as aioredis

from bench.table import Figure
from funding.models import InstantFunding
from jobs.registry import actions_for
from store import keys
from store.transfers import TransferStore

TARGET_BYTES = 350
DEADLINE = date(2026, 11, 24)


def transfer_json(n: int, accounts: int) -> dict[str, Any]:
    """Transfer ``n`` as ``GET /v1/instant_funding`` returns it (executed, due on :data:`DEADLINE`)."""
    amount = f"{5 + n % 997 / 100:.2f}"
    return {
        "id": str(uuid.UUID(int=n + 1)),
        "account_no": f"81{n % accounts:08d}",
        "source_account_no": "7536050SI",
        "amount": amount,
        "status": "EXECUTED",
        "system_date": "2026-11-23",
        "deadline": DEADLINE.isoformat(),
        "created_at": f"2026-11-23T15:{n // 60 % 60:02d}:{n % 60:02d}.{n % 1000:03d}Z",
        "remaining_payable": amount,
        "total_interest": "0",
        "interests": [],
        "fees": [],
    }


def _used(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


async def _record_all(url: str, count: int) -> None:
    client = aioredis.Redis.from_url(url)
    store = TransferStore(client)
    accounts = max(count // 10, 1)
    observed = datetime(2026, 11, 23, 20, 0, tzinfo=UTC)
    try:
        for start in range(0, count, 50):
            rows = [InstantFunding.model_validate(transfer_json(n, accounts)) for n in range(start, start + 50)]
            await asyncio.gather(
                *(
                    store.record(t, source="stream", observed_at=observed, actions=actions_for(t, date(2026, 11, 23)))
                    for t in rows[: count - start]
                )
            )
    finally:
        await client.aclose()


def profile(url: str, count: int) -> list[tuple[str, float]]:
    """Bytes per transfer by key: its own keys (``MEMORY USAGE``) and the shared ones divided by ``count``."""
    client = redis.Redis.from_url(url)
    one = str(uuid.UUID(int=count // 2 + 1))
    own = [("transfer hash", keys.transfer(one))]
    shared = [
        ("unsettled set", keys.UNSETTLED),
        (f"due:{DEADLINE} set", keys.due(DEADLINE)),
        ("system_date set", keys.system_date_transfers("2026-11-23")),
        ("records stream", keys.RECORDS),
        ("outbox stream", keys.OUTBOX),
    ]
    rows = [(name, float(client.memory_usage(key, samples=0) or 0)) for name, key in own]
    rows += [(name, (client.memory_usage(key, samples=0) or 0) / count) for name, key in shared]
    account_sets = [keys.account_transfers(f"81{n:08d}") for n in range(min(count // 10, 200))]
    per_set = sum(client.memory_usage(k, samples=0) or 0 for k in account_sets) / max(len(account_sets), 1)
    rows.append(("account sets", per_set * (count // 10) / count))
    client.close()
    return rows


def measure(url: str, count: int) -> tuple[list[Figure], list[tuple[str, float]]]:
    client = redis.Redis.from_url(url)
    client.flushdb()
    before = _used(client)
    asyncio.run(_record_all(url, count))
    stored = _used(client) - before
    breakdown = profile(url, count)
    client.flushdb()
    before = _used(client)
    accounts = max(count // 10, 1)
    with client.pipeline(transaction=False) as pipe:
        for n in range(count):
            body = transfer_json(n, accounts)
            pipe.set(f"bench:transfer:{body['id']}", json.dumps(body))
        pipe.execute()
    plain = _used(client) - before
    client.flushdb()
    client.close()
    per, plain_per = stored / count, plain / count
    figure = Figure(
        f"Redis memory per tracked transfer ({count:,} recorded)",
        per,
        "B",
        f"≤ {TARGET_BYTES} B",
        per <= TARGET_BYTES,
        f"one SET of its JSON: {plain_per:,.0f} B",
        per / plain_per,
    )
    return [figure], breakdown
