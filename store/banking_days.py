"""The banking calendar as Alpaca gave it on one day (``sk:banking_days:<day>``), so that every job of the day
reads ``GET /v2/calendar/BMO`` once."""

from __future__ import annotations

import json
from datetime import date

import redis.asyncio as aioredis

from funding.banking import BankingCalendar
from store import keys

TTL_SECONDS = 3 * 86400
"""Kept past the day it was read for: a job of the next morning may still look at yesterday's."""


async def cached(client: aioredis.Redis, day: date) -> BankingCalendar | None:
    """The calendar read from Alpaca on ``day``, or None when none was stored (or it is unreadable)."""
    raw = await client.get(keys.banking_days(day))
    if raw is None:
        return None
    try:
        stored = json.loads(raw)
        days = [date.fromisoformat(d) for d in stored["days"]]
        return BankingCalendar.from_days(days, date.fromisoformat(stored["first"]), date.fromisoformat(stored["last"]))
    except (ValueError, KeyError, TypeError):
        return None


async def remember(client: aioredis.Redis, day: date, days: list[date], first: date, last: date) -> None:
    """Remember what Alpaca answered on ``day``: the banking ``days`` from ``first`` to ``last``."""
    body = {"first": first.isoformat(), "last": last.isoformat(), "days": sorted(d.isoformat() for d in days)}
    await client.set(keys.banking_days(day), json.dumps(body), ex=TTL_SECONDS)
