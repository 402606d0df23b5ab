"""JIT securities reports: parse Alpaca's nightly CSVs, check them against each other, say who pays whom.

Alpaca publishes, after 11:30 PM ET on each trade date (docs/broker-api.md "JIT securities funding"):

- ``detail``: one row per cash activity (trades, fees, corporate actions), each assigned by its
  ``summary_categrory`` (sic, Alpaca's spelling) to a settlement bucket: ``in_t0``/``out_t0`` → T+0,
  ``in_t1``/``out_t1`` → T+1, ``in_t2``/``out_t2`` → T+2, plus ``jit_journal`` entries;
- ``net_summary``: one row ``t0,t1,t2``, the net money movement per bucket, negative when money is due
  to Alpaca.

:func:`check` sums the detail's ``net_amt`` per bucket and compares it with the net summary to the cent.
``jit_journal`` rows are the JIT journaling job flattening customer debits and credits inside Alpaca's
books: they have no settlement bucket and move no money between the partner and Alpaca, so they are
counted and totalled on their own and left out of the bucket sums.

:func:`settlement_instructions` turns the net summary into what the partner must do: for a negative
bucket the partner wires Alpaca the amount "in time for settlement" (we hold the partner to the instant
funding cutoff, :data:`PARTNER_PAYMENT_CUTOFF`); for a positive bucket "Alpaca will initiate the wire on
the morning of settlement". The settlement date is the one the detail rows give (Alpaca's fields are the
truth, docs/broker-api.md "Business dates and the timeline"); a bucket without rows falls back to T+0/T+1/T+2 NYSE
trading days after the
system date.

Amounts are :class:`~decimal.Decimal` throughout; nothing here does I/O.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from funding.calendar import SETTLEMENT_CUTOFF, TradingCalendar, at_et
from funding.errors import MalformedDataError
from funding.money import ZERO, parse_money, quantize

BUCKETS = ("t0", "t1", "t2")
"""The settlement buckets of the net summary, in order (T+0, T+1, T+2)."""
JOURNAL_CATEGORY = "jit_journal"
CATEGORY_BUCKETS: dict[str, str | None] = {
    "in_t0": "t0",
    "out_t0": "t0",
    "in_t1": "t1",
    "out_t1": "t1",
    "in_t2": "t2",
    "out_t2": "t2",
    JOURNAL_CATEGORY: None,
}
"""ENUM.SummaryCategoryType (seed 001) → settlement bucket; ``jit_journal`` has none."""
CATEGORY_COLUMN = "summary_categrory"
"""Alpaca's spelling of the column (seed 001); ``summary_category`` is accepted should they fix it."""
DETAIL_COLUMNS = (
    "trns_id",
    "external_id",
    CATEGORY_COLUMN,
    "account_id",
    "account_no",
    "symbol",
    "system_date",
    "trade_date",
    "settle_date",
    "entry_type",
    "side",
    "qty",
    "price",
    "gross_amt",
    "commission",
    "net_amt",
    "description",
    "status",
    "order_id",
    "client_order_id",
)
"""The detail columns seed 001 marks required (``trade_time`` is optional); other columns are ignored."""
PARTNER_PAYMENT_CUTOFF = SETTLEMENT_CUTOFF
"""Seed 001 only says the partner sends the funds "in time for settlement"; settlekeeper holds the partner
to the instant funding cutoff, 1 PM ET on the settlement date, so one daily deadline covers both."""


class JitReportError(MalformedDataError):
    """A JIT report that cannot be read: names the report, the line and the column where it went wrong."""

    def __init__(self, report: str, problem: str, *, line: int | None = None, column: str | None = None) -> None:
        where = "".join((f" line {line}" if line is not None else "", f" column {column}" if column else ""))
        super().__init__(f"JIT {report} report{where}: {problem}")
        self.report = report
        self.line = line
        self.column = column


@dataclass(frozen=True)
class DetailRow:
    """One row of the detail report (the fields settlekeeper uses; the rest stay in ``extra``)."""

    line: int
    trns_id: str
    category: str
    account_no: str
    symbol: str
    system_date: date
    settle_date: date
    entry_type: str
    side: str
    status: str
    gross_amt: Decimal
    commission: Decimal
    net_amt: Decimal
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def bucket(self) -> str | None:
        """``t0``/``t1``/``t2``, or None for a ``jit_journal`` entry."""
        return CATEGORY_BUCKETS[self.category]


@dataclass(frozen=True)
class NetSummary:
    """The one row of the net summary: net per bucket, negative when money is due to Alpaca."""

    t0: Decimal
    t1: Decimal
    t2: Decimal

    def amount(self, bucket: str) -> Decimal:
        return {"t0": self.t0, "t1": self.t1, "t2": self.t2}[bucket]


def _date(report: str, value: str, line: int, column: str) -> date:
    text = value.strip()
    try:
        if len(text) == 10 and text[2] == "-" and text[5] == "-":  # MM-DD-YYYY, as in seed 001's request
            return date(int(text[6:]), int(text[:2]), int(text[3:5]))
        return date.fromisoformat(text)
    except ValueError as exc:
        raise JitReportError(report, f"not a date: {text[:40]!r}", line=line, column=column) from exc


def _money(report: str, value: str, line: int, column: str) -> Decimal:
    try:
        return parse_money(value, what=column)
    except MalformedDataError as exc:
        raise JitReportError(report, str(exc), line=line, column=column) from exc


def _records(report: str, text: str, required: Iterable[str]) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Header and (line number, row) pairs of a CSV text; every ``required`` column must be present."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")), strict=True)
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration as exc:
        raise JitReportError(report, "empty: no header line") from exc
    except csv.Error as exc:
        raise JitReportError(report, f"not CSV: {exc}", line=1) from exc
    if CATEGORY_COLUMN not in header and "summary_category" in header:
        header[header.index("summary_category")] = CATEGORY_COLUMN
    missing = [name for name in required if name not in header]
    if missing:
        raise JitReportError(report, f"missing column(s) {', '.join(missing)}", line=1)
    rows = []
    try:
        for values in reader:
            if not any(value.strip() for value in values):
                continue  # a blank line (a trailing newline, a spreadsheet's empty row)
            if len(values) != len(header):
                raise JitReportError(
                    report, f"{len(values)} fields where the header has {len(header)}", line=reader.line_num
                )
            rows.append((reader.line_num, dict(zip(header, values, strict=True))))
    except csv.Error as exc:
        raise JitReportError(report, f"not CSV: {exc}", line=reader.line_num) from exc
    return header, rows


def parse_detail(text: str) -> list[DetailRow]:
    """The detail report's rows; :class:`JitReportError` for a missing column or a malformed row."""
    _, records = _records("detail", text, DETAIL_COLUMNS)
    known = set(DETAIL_COLUMNS) | {"trade_time"}
    rows = []
    for line, record in records:
        category = record[CATEGORY_COLUMN].strip()
        if category not in CATEGORY_BUCKETS:
            raise JitReportError(
                "detail", f"unknown summary category {category[:40]!r}", line=line, column=CATEGORY_COLUMN
            )
        rows.append(
            DetailRow(
                line=line,
                trns_id=record["trns_id"].strip(),
                category=category,
                account_no=record["account_no"].strip(),
                symbol=record["symbol"].strip(),
                system_date=_date("detail", record["system_date"], line, "system_date"),
                settle_date=_date("detail", record["settle_date"], line, "settle_date"),
                entry_type=record["entry_type"].strip(),
                side=record["side"].strip(),
                status=record["status"].strip(),
                gross_amt=_money("detail", record["gross_amt"], line, "gross_amt"),
                commission=_money("detail", record["commission"], line, "commission"),
                net_amt=_money("detail", record["net_amt"], line, "net_amt"),
                extra={name: value for name, value in record.items() if name not in known},
            )
        )
    return rows


def parse_net_summary(text: str) -> NetSummary:
    """The net summary's single row; :class:`JitReportError` unless there is exactly one with t0, t1, t2."""
    _, records = _records("net_summary", text, BUCKETS)
    if len(records) != 1:
        raise JitReportError("net_summary", f"expected exactly one row, found {len(records)}")
    line, record = records[0]
    t0, t1, t2 = (_money("net_summary", record[name], line, name) for name in BUCKETS)
    return NetSummary(t0, t1, t2)


@dataclass(frozen=True)
class BucketCheck:
    """One bucket: what the detail rows add up to and what the net summary says."""

    bucket: str
    detail: Decimal
    summary: Decimal
    rows: int

    @property
    def difference(self) -> Decimal:
        """Net summary minus detail sum, in cents (zero when they agree)."""
        return quantize(self.summary) - quantize(self.detail)


@dataclass(frozen=True)
class Instruction:
    """One settlement: who pays whom, how much, for which bucket, and by when."""

    bucket: str
    payer: str
    """``partner`` or ``alpaca``."""
    amount: Decimal
    """Always positive."""
    settle_date: date
    due_at: datetime | None
    """When the partner's funds must be at Alpaca; None for Alpaca's wire ("on the morning of settlement")."""

    @property
    def payee(self) -> str:
        return "alpaca" if self.payer == "partner" else "partner"

    @property
    def text(self) -> str:
        """The sentence for the partner's operations team."""
        plus = f"T+{self.bucket[1]}"
        if self.payer == "partner":
            assert self.due_at is not None
            return (
                f"pay Alpaca {self.amount:,.2f} by {self.settle_date} "
                f"{self.due_at.strftime('%H:%M')} ET ({plus} settlement)"
            )
        return f"Alpaca wires you {self.amount:,.2f} on the morning of {self.settle_date} ({plus} settlement)"

    def as_dict(self) -> dict[str, str]:
        return {
            "bucket": self.bucket,
            "payer": self.payer,
            "payee": self.payee,
            "amount": str(self.amount),
            "settle_date": self.settle_date.isoformat(),
            "due_at": self.due_at.isoformat() if self.due_at is not None else "",
            "text": self.text,
        }


@dataclass(frozen=True)
class JitCheck:
    """The outcome of checking one system date's detail against its net summary."""

    system_date: date
    buckets: tuple[BucketCheck, ...]
    journal_rows: int
    journal_total: Decimal
    instructions: tuple[Instruction, ...]
    notes: tuple[str, ...] = ()

    @property
    def matches(self) -> bool:
        return all(b.difference == 0 for b in self.buckets)

    @property
    def mismatches(self) -> tuple[BucketCheck, ...]:
        return tuple(b for b in self.buckets if b.difference != 0)


def calendar_settle_date(system_date: date, bucket: str, calendar: TradingCalendar) -> date:
    """T+n for bucket ``tn``: n NYSE trading days after the system date (T+0: the system date's trading day)."""
    day = calendar.trading_day_on_or_after(system_date)
    for _ in range(int(bucket[1])):
        day = calendar.next_trading_day(day)
    return day


def settlement_instructions(
    system_date: date,
    summary: NetSummary,
    calendar: TradingCalendar,
    settle_dates: Mapping[str, date] | None = None,
) -> tuple[Instruction, ...]:
    """One instruction per bucket whose net is not zero (negative: the partner pays Alpaca).

    ``settle_dates`` (bucket → date) overrides the calendar's T+n, from the detail rows.
    """
    instructions = []
    for bucket in BUCKETS:
        net = quantize(summary.amount(bucket))
        if net == 0:
            continue
        day = (settle_dates or {}).get(bucket) or calendar_settle_date(system_date, bucket, calendar)
        if net < 0:
            instructions.append(Instruction(bucket, "partner", -net, day, at_et(day, PARTNER_PAYMENT_CUTOFF)))
        else:
            instructions.append(Instruction(bucket, "alpaca", net, day, None))
    return tuple(instructions)


def check(system_date: date, rows: Iterable[DetailRow], summary: NetSummary, calendar: TradingCalendar) -> JitCheck:
    """Sum the detail per bucket, compare with the net summary to the cent, derive the instructions."""
    sums = dict.fromkeys(BUCKETS, ZERO)
    counts = dict.fromkeys(BUCKETS, 0)
    dates: dict[str, set[date]] = {bucket: set() for bucket in BUCKETS}
    journal_rows, journal_total = 0, ZERO
    other_days: set[date] = set()
    for row in rows:
        if row.system_date != system_date:
            other_days.add(row.system_date)
        bucket = row.bucket
        if bucket is None:
            journal_rows += 1
            journal_total += row.net_amt
            continue
        sums[bucket] += row.net_amt
        counts[bucket] += 1
        dates[bucket].add(row.settle_date)
    notes = []
    if journal_rows:
        notes.append(
            f"{journal_rows} jit_journal row(s) totalling {quantize(journal_total)} are Alpaca's journals "
            "flattening customer debits and credits: not part of any settlement bucket"
        )
    if other_days:
        notes.append(f"detail rows carry other system dates: {', '.join(sorted(map(str, other_days)))}")
    settle_dates: dict[str, date] = {}
    for bucket in BUCKETS:
        expected = calendar_settle_date(system_date, bucket, calendar)
        if len(dates[bucket]) == 1:
            settle_dates[bucket] = next(iter(dates[bucket]))
            if settle_dates[bucket] != expected:
                notes.append(f"{bucket} rows settle on {settle_dates[bucket]}, not {expected} (NYSE T+{bucket[1]})")
        elif len(dates[bucket]) > 1:
            named = ", ".join(sorted(map(str, dates[bucket])))
            notes.append(f"{bucket} rows name several settle dates ({named}); using {expected}")
    buckets = tuple(BucketCheck(b, sums[b], summary.amount(b), counts[b]) for b in BUCKETS)
    return JitCheck(
        system_date=system_date,
        buckets=buckets,
        journal_rows=journal_rows,
        journal_total=journal_total,
        instructions=settlement_instructions(system_date, summary, calendar, settle_dates),
        notes=tuple(notes),
    )
