"""JIT reports: parsing the seed's CSVs, sums per bucket, settlement instructions (funding/jit_reports.py)."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import date, time
from decimal import Decimal
from typing import Any

import pytest

from funding.calendar import TradingCalendar, at_et
from funding.jit_reports import (
    PARTNER_PAYMENT_CUTOFF,
    DetailRow,
    JitReportError,
    NetSummary,
    check,
    parse_detail,
    parse_net_summary,
)

SEED_COLUMNS = [
    "trns_id", "external_id", "summary_categrory", "account_id", "account_no", "symbol", "system_date",
    "trade_date", "trade_time", "settle_date", "entry_type", "side", "qty", "price", "gross_amt", "commission",
    "net_amt", "description", "status", "order_id", "client_order_id",
]  # fmt: skip
"""Detail.CSV's attributes in seed 001's order, Alpaca's spelling ``summary_categrory`` included."""
CALENDAR = TradingCalendar()
MONDAY = date(2026, 11, 23)
TUESDAY = date(2026, 11, 24)
WEDNESDAY = date(2026, 11, 25)
FRIDAY = date(2026, 11, 27)
NEXT_MONDAY = date(2026, 11, 30)


def row(category: str, net_amt: str, *, settle_date: date = TUESDAY, **fields: str) -> dict[str, str]:
    """One detail row of Monday's trading with the seed's columns; ``fields`` override any column."""
    side = "buy" if category.startswith("in_") else "sell"
    values = {
        "trns_id": str(uuid.uuid4()),
        "external_id": str(uuid.uuid4()),
        "summary_categrory": category,
        "account_id": str(uuid.uuid4()),
        "account_no": "8100000001",
        "symbol": "AAPL",
        "system_date": MONDAY.isoformat(),
        "trade_date": MONDAY.isoformat(),
        "trade_time": "10:15:00",
        "settle_date": settle_date.isoformat(),
        "entry_type": "TRD",
        "side": side,
        "qty": "1",
        "price": str(abs(Decimal(net_amt))),
        "gross_amt": str(abs(Decimal(net_amt))),
        "commission": "0.00",
        "net_amt": net_amt,
        "description": f"{side} 1 AAPL",
        "status": "executed",
        "order_id": str(uuid.uuid4()),
        "client_order_id": str(uuid.uuid4()),
    }
    values.update(fields)
    return values


def detail_csv(rows: list[dict[str, str]], columns: list[str] = SEED_COLUMNS) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def summary_of(t0: str, t1: str, t2: str) -> NetSummary:
    return NetSummary(Decimal(t0), Decimal(t1), Decimal(t2))


def parsed(*rows: dict[str, str]) -> list[DetailRow]:
    return parse_detail(detail_csv(list(rows)))


def test_detail_rows_parse_with_decimal_amounts() -> None:
    """Every seed column is read; amounts are exact Decimals and the category names the bucket."""
    given = row("in_t1", "-1234.57", commission="0.01", gross_amt="1234.56")
    [parsed_row] = parsed(given)
    assert (parsed_row.trns_id, parsed_row.account_no, parsed_row.symbol) == (
        given["trns_id"],
        "8100000001",
        "AAPL",
    )
    assert (parsed_row.category, parsed_row.bucket) == ("in_t1", "t1")
    assert (parsed_row.system_date, parsed_row.settle_date, parsed_row.line) == (MONDAY, TUESDAY, 2)
    assert (parsed_row.gross_amt, parsed_row.commission, parsed_row.net_amt) == (
        Decimal("1234.56"),
        Decimal("0.01"),
        Decimal("-1234.57"),
    )
    assert all(type(v) is Decimal for v in (parsed_row.gross_amt, parsed_row.commission, parsed_row.net_amt))


def test_extra_columns_any_order_and_the_corrected_spelling_are_tolerated() -> None:
    """Unknown columns are kept aside, column order does not matter, and ``summary_category`` is accepted."""
    columns = ["asset_class", *reversed(SEED_COLUMNS)]
    columns[columns.index("summary_categrory")] = "summary_category"
    given = {**row("out_t2", "50.00", settle_date=WEDNESDAY), "asset_class": "us_equity"}
    given["summary_category"] = given.pop("summary_categrory")
    [parsed_row] = parse_detail(detail_csv([given], columns))
    assert (parsed_row.bucket, parsed_row.net_amt, parsed_row.extra) == (
        "t2",
        Decimal("50.00"),
        {"asset_class": "us_equity"},
    )


def test_seed_date_format_and_a_header_only_report_are_read() -> None:
    """``MM-DD-YYYY`` dates (seed 001's request format) parse; a day without activity has no rows."""
    [parsed_row] = parsed(row("in_t1", "-1.00", settle_date=TUESDAY, system_date="11-23-2026"))
    assert parsed_row.system_date == MONDAY
    assert parse_detail(detail_csv([])) == []


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "detail report: empty: no header line"),
        (detail_csv([row("in_t1", "-1.00")], [c for c in SEED_COLUMNS if c != "net_amt"]), "missing column.*net_amt"),
        (
            detail_csv([row("in_t1", "-1.00")]).replace(",-1.00,", ",abc,"),
            r"detail report line 2 column net_amt: net_amt is not a decimal: 'abc'",
        ),
        (detail_csv([row("in_t1", "-1.00"), row("in_t3", "-2.00")]), "line 3 column summary_categrory: unknown"),
        (detail_csv([row("in_t1", "-1.00", settle_date=TUESDAY)]).replace("2026-11-24", "2026-13-24"), "settle_date"),
        (detail_csv([row("in_t1", "-1.00")]) + "a,b,c\n", r"line 3: 3 fields where the header has 21"),
        (detail_csv([row("in_t1", "-1.00")]) + '"unterminated,1\n', "line 3: not CSV: unexpected end of data"),
    ],
    ids=["empty", "missing-column", "bad-amount", "unknown-category", "bad-date", "short-row", "bad-quoting"],
)
def test_malformed_detail_is_a_clear_error(text: str, match: str) -> None:
    """A malformed detail report raises JitReportError naming the report, line and column."""
    with pytest.raises(JitReportError, match=match):
        parse_detail(text)


def test_net_summary_parses_its_single_row() -> None:
    """``t0,t1,t2`` with one row of Decimals; extra columns are ignored."""
    assert parse_net_summary("t0,t1,t2\n0.00,-120.50,35.10\n") == summary_of("0.00", "-120.50", "35.10")
    assert parse_net_summary("t2,t1,t0,currency\n1,2,3,USD\n") == summary_of("3", "2", "1")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("t0,t1\n1,2\n", "missing column.*t2"),
        ("t0,t1,t2\n", "exactly one row, found 0"),
        ("t0,t1,t2\n1,2,3\n4,5,6\n", "exactly one row, found 2"),
        ("t0,t1,t2\n1,x,3\n", "line 2 column t1"),
    ],
)
def test_malformed_net_summary_is_a_clear_error(text: str, match: str) -> None:
    """A net summary without the three columns, with other than one row, or a bad amount is refused."""
    with pytest.raises(JitReportError, match=match):
        parse_net_summary(text)


def test_detail_sums_per_bucket_match_the_summary_and_say_who_pays() -> None:
    """Net buys in T+1 → the partner pays Alpaca by 1 PM on T+1; net sells in T+2 → Alpaca wires on T+2."""
    t1 = [("in_t1", "-1000.25"), ("in_t1", "-300.00"), ("out_t1", "65.70")]
    t2 = [("out_t2", "80.00"), ("in_t2", "-20.00")]
    rows = [row(c, a, settle_date=TUESDAY) for c, a in t1] + [row(c, a, settle_date=WEDNESDAY) for c, a in t2]
    net_t1 = sum((Decimal(a) for _, a in t1), Decimal(0))
    net_t2 = sum((Decimal(a) for _, a in t2), Decimal(0))
    result = check(MONDAY, parsed(*rows), NetSummary(Decimal("0.00"), net_t1, net_t2), CALENDAR)
    assert result.matches
    assert [(b.bucket, b.detail, b.rows, b.difference) for b in result.buckets] == [
        ("t0", Decimal(0), 0, Decimal(0)),
        ("t1", net_t1, 3, Decimal(0)),
        ("t2", net_t2, 2, Decimal(0)),
    ]
    pay, wire = result.instructions
    assert (pay.bucket, pay.payer, pay.payee, pay.amount, pay.settle_date) == (
        "t1",
        "partner",
        "alpaca",
        -net_t1,
        TUESDAY,
    )
    assert pay.due_at == at_et(TUESDAY, PARTNER_PAYMENT_CUTOFF) == at_et(TUESDAY, time(13, 0))
    assert pay.text == f"pay Alpaca {-net_t1:,.2f} by 2026-11-24 13:00 ET (T+1 settlement)"
    assert (wire.bucket, wire.payer, wire.payee, wire.amount, wire.due_at) == ("t2", "alpaca", "partner", net_t2, None)
    assert wire.text == f"Alpaca wires you {net_t2:,.2f} on the morning of 2026-11-25 (T+2 settlement)"
    assert result.notes == ()


def test_a_cent_of_difference_is_a_mismatch_in_that_bucket_only() -> None:
    """To the cent: a summary 0.01 off in t1 is a mismatch of 0.01 there; the instructions follow the summary."""
    rows = parsed(row("in_t1", "-10.00"), row("in_t1", "-5.25"))
    result = check(MONDAY, rows, summary_of("0", "-15.26", "0"), CALENDAR)
    assert not result.matches
    [off] = result.mismatches
    assert (off.bucket, off.detail, off.summary, off.difference) == (
        "t1",
        Decimal("-15.25"),
        Decimal("-15.26"),
        Decimal("-0.01"),
    )
    assert [(i.payer, i.amount) for i in result.instructions] == [("partner", Decimal("15.26"))]


def test_jit_journal_rows_are_counted_apart() -> None:
    """jit_journal rows stay out of the bucket sums; their count and total are reported and explained."""
    rows = parsed(row("in_t1", "-40.00"), row("jit_journal", "-7.50", entry_type="JNLC"), row("jit_journal", "2.50"))
    result = check(MONDAY, rows, summary_of("0", "-40.00", "0"), CALENDAR)
    assert result.matches
    assert (result.journal_rows, result.journal_total) == (2, Decimal("-5.00"))
    assert any("2 jit_journal row(s) totalling -5.00" in note for note in result.notes)


def test_settlement_dates_follow_the_nyse_calendar_over_thanksgiving() -> None:
    """Wednesday 11-25's T+0/T+1/T+2 are 11-25, Friday 11-27 and Monday 11-30 (Thanksgiving closed)."""
    result = check(WEDNESDAY, [], summary_of("-1.00", "-2.00", "3.00"), CALENDAR)
    assert not result.matches  # no rows, yet the summary names money
    assert [(i.bucket, i.settle_date) for i in result.instructions] == [
        ("t0", WEDNESDAY),
        ("t1", FRIDAY),
        ("t2", NEXT_MONDAY),
    ]
    assert [i.due_at for i in result.instructions[:2]] == [at_et(WEDNESDAY, time(13)), at_et(FRIDAY, time(13))]


def test_the_detail_settle_date_wins_over_the_calendar_with_a_note() -> None:
    """Alpaca's settle_date is the truth (docs/broker-api.md "Business dates and the timeline"): a bucket whose rows
    name another date settles then, and it is noted."""
    bank_holiday_shift = date(2026, 11, 25)
    rows = parsed(row("in_t1", "-9.00", settle_date=bank_holiday_shift))
    [instruction] = check(MONDAY, rows, summary_of("0", "-9.00", "0"), CALENDAR).instructions
    assert instruction.settle_date == bank_holiday_shift
    notes = check(MONDAY, rows, summary_of("0", "-9.00", "0"), CALENDAR).notes
    assert notes == ("t1 rows settle on 2026-11-25, not 2026-11-24 (NYSE T+1)",)


def test_instruction_dicts_carry_every_field_as_text() -> None:
    """as_dict is what the job stores and audits: strings only, amounts exact."""
    result = check(MONDAY, parsed(row("in_t1", "-1234.56")), summary_of("0", "-1234.56", "0"), CALENDAR)
    stored: dict[str, Any] = result.instructions[0].as_dict()
    assert stored == {
        "bucket": "t1",
        "payer": "partner",
        "payee": "alpaca",
        "amount": "1234.56",
        "settle_date": "2026-11-24",
        "due_at": "2026-11-24T13:00:00-05:00",
        "text": "pay Alpaca 1,234.56 by 2026-11-24 13:00 ET (T+1 settlement)",
    }
