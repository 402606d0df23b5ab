"""What outside input can be: values of every wrong kind, the ones known to be wrong for a field, and JSON text
with what Python's encoder never writes (``NaN``, exponents past Decimal's range, nesting past the parser's).

Each strategy is built once (``functools.cache``): Hypothesis validates a strategy the first time it draws from it,
which for a recursive one costs more than the draw."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


@dataclass(frozen=True)
class Raw:
    """JSON text written as is where a value goes: a literal or a number no Python value encodes to."""

    text: str


RAW_NUMBERS = (
    Raw("NaN"),
    Raw("Infinity"),
    Raw("-Infinity"),
    Raw("1e999999999999999999999"),
    Raw("-1E+999999999999999999"),
    Raw("1e-9999999999999999999999"),
    Raw("1E+30"),
    Raw("-0.0"),
    Raw("1" * 5000),
    Raw("0." + "9" * 5000),
    Raw("[" * 5000 + "]" * 5000),
)
"""Tokens JSON parsers disagree on: Python's reads NaN and Infinity as floats, a huge exponent overflows Decimal, a
5000-digit integer passes Python's int limit, 5000 brackets pass the recursion limit."""


def encode(value: Any) -> str:
    """JSON text of ``value``: :class:`Raw` as is, Decimals as bare numbers, floats as Python writes them."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{encode(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(encode(item) for item in value) + "]"
    if isinstance(value, Decimal):
        return f"{value:f}" if value.is_finite() else "NaN"
    return json.dumps(value)


def encode_bytes(value: Any) -> bytes:
    """The JSON of ``value`` as UTF-8 bytes (lone surrogates, which JSON escapes anyway, stay escaped)."""
    return encode(value).encode()


@functools.cache
def ulids() -> st.SearchStrategy[str]:
    """ULIDs as Alpaca spells them (upper case; at most 7 as the first character)."""
    return st.builds(lambda a, b: a + b, st.sampled_from("01234567"), st.text(CROCKFORD, min_size=25, max_size=25))


@functools.cache
def uuids() -> st.SearchStrategy[str]:
    return st.uuids().map(str)


@functools.cache
def money() -> st.SearchStrategy[str]:
    """Amounts as Alpaca writes them: decimal strings, two places, either sign."""
    cents = st.integers(min_value=-(10**12), max_value=10**12)
    return cents.map(lambda n: str(Decimal(n).scaleb(-2)))


@functools.cache
def days() -> st.SearchStrategy[date]:
    return st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 12, 31))


@functools.cache
def instants() -> st.SearchStrategy[str]:
    """Aware date-times in RFC 3339: ``Z`` or a whole-minute offset, with or without fractions."""
    offsets = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
    first, last = datetime(2000, 1, 1), datetime(2100, 1, 1)  # noqa: DTZ001 - Hypothesis takes naive bounds
    moments = st.datetimes(min_value=first, max_value=last, timezones=st.just(UTC) | offsets)
    return moments.map(lambda moment: moment.isoformat().replace("+00:00", "Z"))


GIANT = "x" * 100_000
BAD_IDS = (
    "",
    " ",
    "..",
    "../journals",
    "../../v1/journals",
    "%2e%2e%2fjournals",
    "/v1/journals",
    "8e00606a-0000-4000-8000-00000000000",
    "8e00606a-0000-4000-8000-000000000009/../x",
    "8e00606a-0000-4000-8000-00000000000g",
    "null",
    "{id}",
    GIANT,
)
"""Ids no endpoint and no Redis key may be built from (pydantic's UUID accepts other spellings: none is here)."""
BAD_ULIDS = ("", "not-a-ulid", "01JCBX2Q9F8ZC3M7T4V5W6X7YU", "81JCBX2Q9F8ZC3M7T4V5W6X7Y8", "01JCBX2Q9F8ZC3M7T4V5W6X7Y")
"""Not ULIDs: empty, not base32, a U (not a Crockford digit), 8 first (past 128 bits), 25 characters."""
BAD_MONEY_TEXT = (
    "NaN",
    "1E+30",
    "Infinity",
    "-1E+400",
    "12,50",
    "9" * 40,
    "1e999999999999999999999",
    "-NaN",
    "sNaN",
    "-Infinity",
    "inf",
    "1.2.3",
    "",
    " ",
    "abc",
    "$5",
    "5 USD",
    "0x10",
)
"""Amount texts that are not amounts: not decimal, not finite, or past what can be written in cents (those early:
Hypothesis draws the first entries of a list more often)."""
BAD_DATES = ("", "2026-02-30", "2026-13-01", "0000-01-01", "2026-1-1", "11/23/2026", "yesterday", "2026-11-23T10:00")
BAD_INSTANTS = (
    "",
    "2026-11-23T15:00:01",
    "2026-11-23",
    "2026-11-23T25:00:00Z",
    "2026-02-30T10:00:00Z",
    "now",
    "2026-11-23T15:00:01.5",
    "20261123T150001Z",
    "2026-W48-1T15:00:00Z",
    "2026-11-23T15Z",
)
"""Not an aware RFC 3339 date-time: naive ones (compared with aware ones, they raise TypeError), and ISO 8601 forms
RFC 3339 leaves out (``datetime.fromisoformat`` reads them, pydantic does not)."""
UNKNOWN_WORDS = ("SETTLED", "Executed", "executed ", "mem", "MEM ", "XFER", "JNLX", "zz", "../x", "\x00", GIANT)


@functools.cache
def not_text() -> st.SearchStrategy[Any]:
    """Values of every JSON type but string (numbers in each form, containers, null)."""
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(10**40), max_value=10**40),
        st.floats(),
        st.sampled_from(RAW_NUMBERS),
        st.lists(st.integers(), max_size=3),
        st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    )


@functools.cache
def bad_money() -> st.SearchStrategy[Any]:
    """Amounts that are not amounts: texts, JSON numbers that are not finite or too large for cents, booleans, raw
    tokens. (A finite JSON number of sane size is an amount: it parses to the exact Decimal.)"""
    huge = st.floats(allow_nan=True, allow_infinity=True).filter(lambda x: not abs(x) < 1e20)
    return st.one_of(st.sampled_from(BAD_MONEY_TEXT), huge, st.booleans(), st.sampled_from(RAW_NUMBERS[:7]))


@functools.cache
def text_like() -> st.SearchStrategy[str]:
    """Strings of any kind: short text (no surrogates: a stream's lines are decoded UTF-8), giant, or hostile."""
    return st.one_of(st.text(max_size=40), st.sampled_from([*BAD_IDS, *UNKNOWN_WORDS, *BAD_DATES, *BAD_INSTANTS]))


@functools.cache
def json_values() -> st.SearchStrategy[Any]:
    """Any JSON value (nested a few levels), raw tokens and escaped lone surrogates among them."""
    leaves = st.one_of(not_text(), text_like(), st.just("\ud800"))
    return st.recursive(
        leaves, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    )
