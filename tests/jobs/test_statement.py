"""The end-of-day statement: its tallies, and one Slack message within Block Kit's limits however big the day."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from funding.alerts import Alert, Severity
from jobs.alert_delivery import Delivery, slack_message
from jobs.statement import Statement, Tally, tally_due
from tests.support.transfers import make_transfer


def test_a_days_transfers_are_tallied_by_who_settled_them_and_what_became_of_them() -> None:
    """Completed ones split by the settled-by marks (ours, else the partner's); canceled, still open; interest."""
    ours = make_transfer("COMPLETED", amount="100.00", interest="0.05")
    partner = make_transfer("COMPLETED", amount="40.00")
    canceled = make_transfer("CANCELED", amount="7.50", interest="0.01")
    still = make_transfer("EXECUTED", amount="3.00")
    due, by_us, by_partner, gone, still_open, interest = tally_due([ours, partner, canceled, still], {str(ours.id)})
    assert (due, by_us, by_partner, gone, still_open, interest) == (
        Tally(4, Decimal("150.50")),
        Tally(1, Decimal("100.00")),
        Tally(1, Decimal("40.00")),
        Tally(1, Decimal("7.50")),
        Tally(1, Decimal("3.00")),
        Decimal("0.06"),
    )


def big_day() -> Statement:
    million = Tally(1_000_000, Decimal("987654321.98"))
    return Statement(
        date(2026, 11, 24),
        million,
        million,
        Tally(999_000, Decimal("986000000.00")),
        Tally(900, Decimal("1600000.00")),
        Tally(100, Decimal("54321.98")),
        Tally(),
        Decimal("12345.67"),
        Decimal("98765.43"),
        Tally(80, Decimal("40000.00")),
        Tally(20, Decimal("14321.98")),
        Decimal("1234567.89"),
        Decimal("0.00"),
        "forecast: wire 1,234,567.89 into RF to be credited by 2026-11-27 (08:00–08:30 ET), covering through "
        "2026-11-27; not sending it costs 543.21 (321.00 late interest, 222.21 margin interest if spent)",
    )


def test_a_million_transfer_day_is_one_message_within_block_kits_limits() -> None:
    """Totals only: header, summary, the facts in sections of at most 10 fields, context; under 50 blocks and 3,000
    characters a text, and every figure of the day is in it."""
    found = big_day()
    alert = Alert("statement", Severity.INFO, "ladder-statement-2026-11-24", found.summary(), found.facts())
    message = slack_message(Delivery(1, "trigger", alert), "docs/runbook.md#statement")
    blocks = message["blocks"]
    assert len(blocks) <= 50
    for block in blocks:
        assert len(block.get("text", {}).get("text", "")) <= 3000
        assert len(block.get("fields", [])) <= 10
    assert blocks[1]["text"]["text"].count("1000000 (987,654,321.98)") == 2  # created, and due today
    shown = " ".join(field["text"] for block in blocks for field in block.get("fields", []))
    for value in found.facts().values():
        assert value in shown
