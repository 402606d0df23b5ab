"""Fuzz funding/jit_reports.py ``parse_detail`` and ``parse_net_summary`` with mutated CSV text, then ``check`` what
they read, as jobs/reports.py does.

The CSVs start as Alpaca writes them (every seed column, amounts in cents, ISO or MM-DD-YYYY dates, quoted
descriptions, a BOM or not) and lose columns, gain commas, get bad numbers, bad dates, unknown categories, NULs,
lone ``\\r``, giant fields or are cut anywhere. Properties: only ``JitReportError`` comes out of a parser; a pristine
report reads back exactly; a known-bad one is refused; what is read holds finite Decimals writable in cents; and
``check`` plus the instructions' texts never raise on what the parsers accepted.
"""

from __future__ import annotations

import csv
import io
import string
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from funding.calendar import TradingCalendar
from funding.jit_reports import (
    BUCKETS,
    CATEGORY_BUCKETS,
    CATEGORY_COLUMN,
    DETAIL_COLUMNS,
    DetailRow,
    JitReportError,
    NetSummary,
    check,
    parse_detail,
    parse_net_summary,
)
from funding.money import wire
from tests.fuzz.profiles import examples
from tests.fuzz.wild import BAD_DATES, BAD_MONEY_TEXT, days, money, uuids

CALENDAR = TradingCalendar()
MONDAY = date(2026, 11, 23)
AMOUNTS = ("gross_amt", "commission", "net_amt")
DATES = ("system_date", "settle_date")
TEXT = st.text(alphabet=string.ascii_letters + string.digits + ' ,"\n;é-', max_size=20)
"""Free text as a CSV cell may hold it: commas, quotes and newlines (the writer quotes them), non-ASCII."""


@dataclass(frozen=True)
class Report:
    """CSV text; ``known_bad``: it must be refused; ``rows``: what a pristine one must read as (None: not pristine)."""

    text: str
    known_bad: bool = False
    rows: list[dict[str, str]] | None = None


def cell_date(day: date, us: bool) -> str:
    return day.strftime("%m-%d-%Y") if us else day.isoformat()


@st.composite
def detail_rows(draw: st.DrawFn) -> dict[str, str]:
    us = draw(st.booleans())
    values = {name: draw(TEXT) for name in DETAIL_COLUMNS}
    values.update(
        trns_id=draw(uuids()),
        account_id=draw(uuids()),
        account_no=draw(st.text(string.ascii_uppercase + string.digits, min_size=1, max_size=10)),
        system_date=cell_date(draw(days()), us),
        settle_date=cell_date(draw(days()), us),
        trade_date=cell_date(draw(days()), us),
        **{CATEGORY_COLUMN: draw(st.sampled_from(sorted(CATEGORY_BUCKETS)))},
        **{name: draw(money()) for name in AMOUNTS},
    )
    return values


def write(header: list[str], rows: list[list[str]], bom: bool) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return ("\ufeff" if bom else "") + buffer.getvalue()


BAD_CELL = {
    **dict.fromkeys(AMOUNTS, st.sampled_from(BAD_MONEY_TEXT)),
    **dict.fromkeys(DATES, st.sampled_from(BAD_DATES) | st.just("13-45-2026")),
    CATEGORY_COLUMN: st.sampled_from(["", "in_t3", "IN_T0", "jit journal", "x" * 50]),
}
"""Cells a row must not be read with."""


def text_damage(draw: st.DrawFn, text: str) -> str:
    """The text cut, or with junk (a NUL, a lone CR, a comma, a quote, a giant field) spliced in anywhere."""
    at = draw(st.integers(0, len(text)))
    if draw(st.booleans()):
        return text[:at]
    junk = draw(st.sampled_from(["\x00", "\r", ",", '"', "\ufeff", "\n\n", "x" * 200_000, ",,,\n"]))
    return text[:at] + junk + text[at:]


@st.composite
def detail_reports(draw: st.DrawFn) -> Report:
    """A detail report as Alpaca writes it, or with one kind of damage."""
    rows = draw(st.lists(detail_rows(), max_size=5))
    header = list(DETAIL_COLUMNS) + draw(st.lists(st.sampled_from(["trade_time", "currency", "x"]), unique=True))
    table = [[row.get(name, "") for name in header] for row in rows]
    damage = draw(st.sampled_from(["none", "none", "cell", "cell", "column", "commas", "text"]))
    bom = draw(st.booleans())
    if damage == "cell" and rows:
        name = draw(st.sampled_from(sorted(BAD_CELL)))
        table[draw(st.integers(0, len(rows) - 1))][header.index(name)] = draw(BAD_CELL[name])
        return Report(write(header, table, bom), known_bad=True)
    if damage == "column":
        index = draw(st.integers(0, len(DETAIL_COLUMNS) - 1))
        header.pop(index)
        return Report(write(header, [line[:index] + line[index + 1 :] for line in table], bom), known_bad=True)
    if damage == "commas" and rows:
        table[draw(st.integers(0, len(rows) - 1))].append(draw(st.sampled_from(["", "x", ",,"])))
        return Report(write(header, table, bom), known_bad=True)
    text = write(header, table, bom)
    if damage == "text":
        return Report(text_damage(draw, text))
    return Report(text, rows=rows)


@st.composite
def summaries(draw: st.DrawFn) -> Report:
    """A net summary (t0, t1, t2 in any order, maybe more columns), or with one kind of damage."""
    header = draw(st.permutations([*BUCKETS, *draw(st.lists(st.sampled_from(["currency", "x"]), unique=True))]))
    row = {name: draw(money()) for name in BUCKETS} | {"currency": "USD", "x": draw(TEXT)}
    line = [row[name] for name in header]
    damage = draw(st.sampled_from(["none", "none", "cell", "cell", "column", "rows", "commas", "text"]))
    bom = draw(st.booleans())
    if damage == "cell":
        line[header.index(draw(st.sampled_from(BUCKETS)))] = draw(st.sampled_from(BAD_MONEY_TEXT))
    elif damage == "column":
        index = header.index(draw(st.sampled_from(BUCKETS)))
        header, line = header[:index] + header[index + 1 :], line[:index] + line[index + 1 :]
    elif damage == "rows":
        return Report(write(header, [line] * draw(st.sampled_from([0, 2, 3])), bom), known_bad=True)
    elif damage == "commas":
        line.append("")
    text = write(header, [line], bom)
    if damage == "text":
        return Report(text_damage(draw, text))
    return Report(text, known_bad=damage != "none", rows=[row] if damage == "none" else None)


def check_amount(amount: Any) -> None:
    assert isinstance(amount, Decimal)
    assert amount.is_finite()
    wire(amount)


def cell(value: str) -> date:
    text = value.strip()
    if len(text) == 10 and text[2] == "-":
        return date(int(text[6:]), int(text[:2]), int(text[3:5]))
    return date.fromisoformat(text)


def read_detail(report: Report) -> list[DetailRow]:
    """What parse_detail makes of the report, checked; [] when it refuses it (as it must when known bad)."""
    try:
        rows = parse_detail(report.text)
    except JitReportError as exc:
        refused = str(exc)
    else:
        refused = ""
    if refused:
        assert refused.startswith("JIT detail report")
        return []
    assert not report.known_bad, "a bad detail report was read"
    for row in rows:
        for amount in (row.gross_amt, row.commission, row.net_amt):
            check_amount(amount)
        assert row.category in CATEGORY_BUCKETS
    if report.rows is not None:  # pristine: read back exactly
        assert [(r.trns_id, r.net_amt, r.settle_date) for r in rows] == [
            (g["trns_id"], Decimal(g["net_amt"]), cell(g["settle_date"])) for g in report.rows
        ]
    return rows


def read_summary(report: Report) -> NetSummary:
    """What parse_net_summary makes of the report, checked; zeros when it refuses it (as it must when known bad)."""
    try:
        net = parse_net_summary(report.text)
    except JitReportError as exc:
        refused = str(exc)
    else:
        refused = ""
    if refused:
        assert refused.startswith("JIT net_summary report")
        return NetSummary(Decimal(0), Decimal(0), Decimal(0))
    assert not report.known_bad, "a bad net summary was read"
    for bucket in BUCKETS:
        check_amount(net.amount(bucket))
    if report.rows is not None:
        assert net == NetSummary(*(Decimal(report.rows[0][b]) for b in BUCKETS))
    return net


@settings(max_examples=examples(150))
@given(detail_reports(), summaries())
def test_detail_and_summary_parse_or_refuse_and_check_never_raises(detail: Report, summary: Report) -> None:
    """Each parser reads its report exactly or refuses it with JitReportError; check() runs on whatever they read."""
    rows = read_detail(detail)
    net = read_summary(summary)
    result = check(MONDAY, rows, net, CALENDAR)
    for instruction in result.instructions:
        check_amount(instruction.amount)
        assert instruction.as_dict()["text"]
    for bucket in result.buckets:
        check_amount(bucket.difference)


# ---------------------------------------------------------------------- defects the targets found, pinned


@pytest.mark.parametrize("amount", ["1E+30", "-1E+400", "9" * 40])
def test_regression_an_amount_past_cents_range_is_refused(amount: str) -> None:
    """A net summary ``t0,t1,t2`` / ``1E+30,0,0`` was read, then check() raised decimal.InvalidOperation quantizing
    it (in the JIT job, past its MalformedDataError handling); now the parser refuses it, and such a detail row."""
    with pytest.raises(JitReportError, match="column t0"):
        parse_net_summary(f"t0,t1,t2\n{amount},0,0\n")
    row = {name: "x" for name in DETAIL_COLUMNS} | {CATEGORY_COLUMN: "in_t1", "system_date": "2026-11-23"}
    row |= {"settle_date": "2026-11-24", "gross_amt": "0", "commission": "0", "net_amt": amount}
    with pytest.raises(JitReportError, match="column net_amt"):
        parse_detail(write(list(row), [list(row.values())], bom=False))
