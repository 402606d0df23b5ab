"""Fuzz jobs/reconcile.py's reading of Alpaca's text: a journal's ``description``, a settlement's ``additional_info``.

Alpaca returns what anyone with the correspondent's keys wrote there, so it is hostile input that names Redis keys.
Properties: reading never raises; what it reads is exactly settlekeeper's shape (``fund-<day>-<n>``,
``cover-<account>-<day>``, ``settle-<day>-<n>``, a real date, a sequence without a leading zero) and its key is
rebuilt from its parts, so no other text ever becomes a Redis key; settlekeeper's own texts are always read.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from funding.models import Journal, Settlement
from jobs.reconcile import journal_found, settlement_found

ID = "8f2d1e4a-1b2c-4d3e-9f00-0123456789ab"
KEYS = re.compile(
    r"fund-[0-9]{4}-[0-9]{2}-[0-9]{2}-[1-9][0-9]{0,8}|cover-[0-9A-Za-z]{1,32}-[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"|settle-[0-9]{4}-[0-9]{2}-[0-9]{2}-[1-9][0-9]{0,8}"
)
PIECES = st.sampled_from(
    [
        "settlekeeper ",
        "settlekeeper intent ",
        "fund-",
        "cover-",
        "settle-",
        "2026-11-24",
        "2026-02-30",
        "-",
        "1",
        "01",
        "0",
        ": ",
        ":",
        "8100000001",
        "../",
        "%2F",
        "\n",
        "\x00",
        "é",
        " (attempt 2)",
        "(attempt 0)",
    ]
)
TEXTS = st.lists(PIECES | st.text(max_size=12), max_size=8).map("".join) | st.text(max_size=400)


def journal(description: Any) -> Journal:
    return Journal.model_validate(
        {
            "id": ID,
            "entry_type": "JNLC",
            "from_account": ID,
            "to_account": ID,
            "net_amount": "-1.00",
            "status": "executed",
            "description": description,
        }
    )


def settlement(info: Any) -> Settlement:
    return Settlement.model_validate(
        {
            "id": ID,
            "status": "COMPLETED",
            "total_amount": "1.00",
            "created_at": "2026-11-24T12:00:00-05:00",
            "updated_at": "2026-11-24T12:00:00-05:00",
            "additional_info": info,
        }
    )


def shaped(key: str, day: date) -> bool:
    return KEYS.fullmatch(key) is not None and day.isoformat() in key


@given(TEXTS)
def test_a_description_is_read_only_in_settlekeepers_exact_shape(text: str) -> None:
    """Any description: nothing raises; a key read is of settlekeeper's shape, with a real day and its own parts."""
    found = journal_found(journal(text))
    if found is not None:
        assert shaped(found.key, found.deadline)
        assert text.startswith(f"settlekeeper {found.key}: ")
        assert found.key == (
            f"fund-{found.deadline}-{found.seq}"
            if found.kind == "fund"
            else f"cover-{found.account_no}-{found.deadline}"
        )
        assert found.attempt >= 1


@given(TEXTS)
def test_additional_info_is_read_only_as_settlekeepers_tag(text: str) -> None:
    """Any additional_info: a settle key read is exactly ``settlekeeper intent settle-<day>-<n>``."""
    found = settlement_found(settlement(text))
    if found is not None:
        assert text == f"settlekeeper intent settle-{found.deadline}-{found.seq}"
        assert shaped(found.key, found.deadline)


@given(
    st.dates(date(2000, 1, 1), date(2099, 12, 31)),
    st.integers(1, 999_999_999),
    st.from_regex(r"[0-9A-Za-z]{1,32}", fullmatch=True),
)
def test_settlekeepers_own_texts_are_always_read(day: date, seq: int, account: str) -> None:
    """What settlekeeper writes (``jobs/runtime.py``, ``jobs/settlements.py``) is read back as written."""
    fund = journal_found(journal(f"settlekeeper fund-{day}-{seq}: SI lacks what is due"))
    cover = journal_found(
        journal(f"settlekeeper cover-{account}-{day}: debit of 1.00 after IF cancellation (attempt 3)")
    )
    settle = settlement_found(settlement(f"settlekeeper intent settle-{day}-{seq}"))
    assert fund is not None
    assert (fund.kind, fund.deadline, fund.seq) == ("fund", day, seq)
    assert cover is not None
    assert (cover.account_no, cover.deadline, cover.attempt) == (account, day, 3)
    assert settle is not None
    assert (settle.deadline, settle.seq) == (day, seq)
