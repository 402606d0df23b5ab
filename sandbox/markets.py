"""``GET /v2/calendar/{market}`` and ``GET /v2/clock`` of the sandbox: the NYSE trading calendar and the US
banking calendar (``BMO``), in the shapes of Alpaca's document (docs/sandbox.md "Calendars")."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from aiohttp import web

from funding.calendar import MARKET_OPEN, SESSION_CLOSE, SESSION_OPEN, at_et, to_et
from sandbox.api import parse_date, parse_instant
from sandbox.engine import Engine
from sandbox.http import engine
from sandbox.state import SandboxError

BANK_OPEN, BANK_CLOSE = time(8, 0), time(17, 0)
"""The hours of a banking day in the sandbox's BMO calendar (the worker reads only which days are open)."""
MAX_DAYS = 3700


@dataclass(frozen=True)
class Market:
    info: dict[str, str]
    phases: Callable[[Engine, date], list[tuple[str, time, time]] | None]
    """The day's phases (name, start, end) in ET, or None when the market is closed that day."""
    settles: bool = False


def _nyse(eng: Engine, day: date) -> list[tuple[str, time, time]] | None:
    if not eng.calendar.is_trading_day(day):
        return None
    close = eng.calendar.session(day).close
    return [("pre", SESSION_OPEN, MARKET_OPEN), ("core", MARKET_OPEN, close), ("post", close, SESSION_CLOSE)]


def _bmo(eng: Engine, day: date) -> list[tuple[str, time, time]] | None:
    return [("core", BANK_OPEN, BANK_CLOSE)] if eng.banking.is_banking_day(day) else None


MARKETS = {
    "NYSE": Market(
        {"acronym": "NYSE", "name": "New York Stock Exchange", "mic": "XNYS", "timezone": "America/New_York"},
        _nyse,
        settles=True,
    ),
    "BMO": Market({"acronym": "BMO", "name": "Bank of Montreal", "timezone": "America/New_York"}, _bmo),
}
ALIASES = {"XNYS": "NYSE"}


def _market(code: str) -> Market:
    market = MARKETS.get(ALIASES.get(code.upper(), code.upper()))
    if market is None:
        raise SandboxError(400, f"market {code[:20]!r} is not served by the sandbox (NYSE, BMO)")
    return market


def _instant(day: date, at: time, utc: bool) -> str:
    moment = at_et(day, at)
    return (moment.astimezone(UTC) if utc else moment).isoformat()


def _day(eng: Engine, market: Market, day: date, utc: bool) -> dict[str, str] | None:
    phases = market.phases(eng, day)
    if phases is None:
        return None
    row = {"date": day.isoformat()}
    for name, start, end in phases:
        row[f"{name}_start"] = _instant(day, start, utc)
        row[f"{name}_end"] = _instant(day, end, utc)
    if market.settles:
        row["settlement_date"] = eng.calendar.next_trading_day(day).isoformat()
    return row


async def calendar(request: web.Request) -> web.Response:
    eng = engine(request)
    market = _market(request.match_info["market"])
    q = request.query
    if q.get("timezone", "UTC") != "UTC":
        raise SandboxError(400, "timezone must be UTC (or omitted for the market's own)")
    start = parse_date(q["start"], "start") if "start" in q else to_et(eng.now).date()
    end = parse_date(q["end"], "end") if "end" in q else start + timedelta(days=7)
    if end < start or (end - start).days > MAX_DAYS:
        raise SandboxError(400, f"end must be on or after start, at most {MAX_DAYS} days later")
    days = (start + timedelta(days=n) for n in range((end - start).days + 1))
    rows = [row for day in days if (row := _day(eng, market, day, "timezone" in q)) is not None]
    return web.json_response({"market": market.info, "calendar": rows})


def _clock(eng: Engine, market: Market, now: datetime) -> dict[str, Any]:
    local = to_et(now)
    phase, until = "closed", None
    for name, start, end in market.phases(eng, local.date()) or []:
        if at_et(local.date(), start) <= local < at_et(local.date(), end):
            phase, until = name, at_et(local.date(), end)
    day, next_open, next_close = local.date(), None, None
    while next_open is None or next_close is None:
        phases = {name: (s, e) for name, s, e in market.phases(eng, day) or []}
        if "core" in phases:
            opens, closes = (at_et(day, t) for t in phases["core"])
            next_open = next_open or (opens if opens > local else None)
            next_close = next_close or (closes if closes > local else None)
        day += timedelta(days=1)
    if until is None:  # closed: until the first phase of the next open day
        day = local.date()
        while until is None:
            for _, start, _ in market.phases(eng, day) or []:
                if at_et(day, start) > local:
                    until = at_et(day, start)
                    break
            day += timedelta(days=1)
    return {
        "market": market.info,
        "timestamp": local.isoformat(),
        "is_market_day": market.phases(eng, local.date()) is not None,
        "next_market_open": next_open.isoformat(),
        "next_market_close": next_close.isoformat(),
        "phase": phase,
        "phase_until": until.isoformat(),
    }


async def clock(request: web.Request) -> web.Response:
    eng = engine(request)
    q = request.query
    codes = [c for c in q.get("markets", "NYSE").split(",") if c]
    now = parse_instant(q["time"], "time") if "time" in q else eng.now
    return web.json_response({"clocks": [_clock(eng, _market(code), now) for code in codes]})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v2/calendar/{market}", calendar)
    app.router.add_get("/v2/clock", clock)
