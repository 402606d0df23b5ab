"""Traffic for the forecast scenarios: a transfer an hour, the same amounts every week, recorded in the store."""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal

import redis.asyncio as aioredis

from funding.calendar import at_et
from funding.models import InstantFunding
from store.transfers import TransferStore
from tests.support.sandbox import Sandbox

HOURS = range(9, 19)


def amount(day: date, hour: int) -> Decimal:
    """Each weekday has its own amounts, the same every week: the forecast's sample is then what comes."""
    return Decimal(10 * (day.weekday() + 1) + 3 * hour) + Decimal("0.55")


async def day_of_traffic(sandbox: Sandbox, day: date, hours: range = HOURS) -> None:
    """One transfer an hour from 09:00 to 18:00 ET, to customers 8100000001.. in turn."""
    for hour in hours:
        await sandbox.set_clock(at_et(day, time(hour, 0)))
        await sandbox.create_transfer(f"81{hour - HOURS.start + 1:08d}", str(amount(day, hour)))


async def record_all(sandbox: Sandbox, url: str) -> None:
    """What the listener would have recorded: every transfer as the Broker API returns it now."""
    client = aioredis.Redis.from_url(url)
    store = TransferStore(client)
    offset = 0
    while True:
        page = await sandbox.ok("GET", "/v1/instant_funding?limit=100" + (f"&offset={offset}" if offset else ""))
        for row in page:
            transfer = InstantFunding.model_validate(row)
            await store.record(transfer, source="rest", observed_at=datetime.now().astimezone())
        if len(page) < 100:
            break
        offset += len(page)
    await client.aclose()


def total_of(day: date) -> Decimal:
    """What a day of :func:`day_of_traffic` brings."""
    return sum((amount(day, hour) for hour in HOURS), Decimal(0))
