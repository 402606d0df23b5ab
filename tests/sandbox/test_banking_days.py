"""The sandbox's banking calendar: /v2/calendar and /v2/clock for NYSE and BMO, and when an incoming wire lands."""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal

import pytest

from funding.banking import BankingCalendar
from funding.calendar import ET, at_et
from tests.support.sandbox import Sandbox, SandboxFactory

SI = "7536050SI"
COLUMBUS_DAY = date(2026, 10, 12)
VETERANS_DAY = date(2026, 11, 11)


async def days(sandbox: Sandbox, market: str, start: date, end: date) -> list[str]:
    answer = await sandbox.ok("GET", f"/v2/calendar/{market}", params={"start": str(start), "end": str(end)})
    return [row["date"] for row in answer["calendar"]]


@pytest.mark.parametrize("holiday", [COLUMBUS_DAY, VETERANS_DAY])
async def test_bank_holidays_trade_but_do_not_bank(sandbox: Sandbox, holiday: date) -> None:
    """Columbus Day and Veterans Day 2026 are NYSE trading days and not BMO banking days."""
    assert str(holiday) in await days(sandbox, "NYSE", holiday, holiday)
    assert await days(sandbox, "BMO", holiday, holiday) == []


async def test_the_calendars_differ_only_where_banks_and_exchange_disagree(sandbox: Sandbox) -> None:
    """Over 2026 the NYSE and BMO calendars differ on exactly the days the two holiday lists differ."""
    nyse = set(await days(sandbox, "NYSE", date(2026, 1, 1), date(2026, 12, 31)))
    bmo = set(await days(sandbox, "BMO", date(2026, 1, 1), date(2026, 12, 31)))
    assert sorted(nyse - bmo) == ["2026-10-12", "2026-11-11"]
    assert sorted(bmo - nyse) == ["2026-04-03", "2026-07-03"]  # Good Friday; Independence Day observed by NYSE


async def test_clock_reports_each_market_phase(sandbox: Sandbox) -> None:
    """At noon on Columbus Day the NYSE is in its core session while BMO is closed until Tuesday 08:00 ET."""
    noon = at_et(COLUMBUS_DAY, time(12, 0)).isoformat()
    clocks = (await sandbox.ok("GET", "/v2/clock", params={"markets": "NYSE,BMO", "time": noon}))["clocks"]
    nyse, bmo = clocks
    assert (nyse["market"]["acronym"], nyse["is_market_day"], nyse["phase"]) == ("NYSE", True, "core")
    assert datetime.fromisoformat(nyse["phase_until"]) == at_et(COLUMBUS_DAY, time(16, 0))
    assert (bmo["market"]["acronym"], bmo["is_market_day"], bmo["phase"]) == ("BMO", False, "closed")
    assert datetime.fromisoformat(bmo["next_market_open"]) == at_et(date(2026, 10, 13), time(8, 0))


async def test_unknown_market_is_a_clear_400(sandbox: Sandbox) -> None:
    """A market the sandbox does not serve is refused with a message naming those it does."""
    status, body = await sandbox.call("GET", "/v2/calendar/LSE")
    assert status == 400
    assert "NYSE, BMO" in body["message"]


async def cash(sandbox: Sandbox) -> Decimal:
    return await sandbox.cash(SI)


@pytest.mark.parametrize(
    ("sent", "lands"),
    [
        (datetime(2026, 10, 12, 10, 0, tzinfo=ET), datetime(2026, 10, 13, 8, 0, tzinfo=ET)),  # Columbus Day
        (datetime(2026, 11, 11, 10, 0, tzinfo=ET), datetime(2026, 11, 12, 8, 0, tzinfo=ET)),  # Veterans Day
        (datetime(2026, 11, 23, 7, 0, tzinfo=ET), datetime(2026, 11, 23, 8, 0, tzinfo=ET)),  # before the window
        (datetime(2026, 11, 23, 8, 10, tzinfo=ET), datetime(2026, 11, 23, 8, 10, tzinfo=ET)),  # inside it
        (datetime(2026, 11, 25, 10, 0, tzinfo=ET), datetime(2026, 11, 27, 8, 0, tzinfo=ET)),  # over Thanksgiving
    ],
)
async def test_a_wire_lands_in_the_next_booking_window(
    make_sandbox: SandboxFactory, sent: datetime, lands: datetime
) -> None:
    """A wire is credited at 08:00–08:30 ET of a banking day: the next one when banks are closed or it is past."""
    sandbox = await make_sandbox(sent)
    before = await cash(sandbox)
    answer = await sandbox.ok("POST", "/sandbox/wires", {"account_no": SI, "amount": "100.00"})
    assert datetime.fromisoformat(answer["wire_credited_at"]) == lands
    assert BankingCalendar().wire_booked_at(sent) == lands
    await sandbox.set_clock(lands)
    assert await cash(sandbox) == before + Decimal("100.00")


async def test_a_wire_is_not_credited_before_its_window(make_sandbox: SandboxFactory) -> None:
    """A wire sent on Columbus Day is not in SI at 07:59 ET the next morning, and is at 08:00."""
    sandbox = await make_sandbox(datetime(2026, 10, 12, 10, 0, tzinfo=ET))
    before = await cash(sandbox)
    await sandbox.ok("POST", "/sandbox/wires", {"account_no": SI, "amount": "100.00"})
    await sandbox.set_clock(datetime(2026, 10, 13, 7, 59, tzinfo=ET))
    assert await cash(sandbox) == before
    await sandbox.set_clock(datetime(2026, 10, 13, 8, 0, tzinfo=ET))
    assert await cash(sandbox) == before + Decimal("100.00")


async def test_an_immediate_wire_is_credited_at_once(make_sandbox: SandboxFactory) -> None:
    """The admin call's "immediate" credits the wire now, even on a bank holiday (tests and the demo)."""
    sandbox = await make_sandbox(datetime(2026, 10, 12, 10, 0, tzinfo=ET))
    before = await cash(sandbox)
    await sandbox.wire(SI, "100.00")
    assert await cash(sandbox) == before + Decimal("100.00")
