"""Money: ``Decimal`` end to end, 2-decimal amounts on the wire, never ``float``."""

from __future__ import annotations

import json
import re
import secrets
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from funding.errors import MalformedDataError

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
DAYS_IN_INTEREST_YEAR = Decimal(360)
"""Alpaca charges both IF late interest and margin interest on an actual/360 basis."""

LATE_INTEREST_SPREAD = Decimal("0.08")
"""IF late interest is the fed funds upper bound plus 8 % a year (docs/broker-api.md "Business dates and the
timeline")."""


MAX_AMOUNT = Decimal("1e20")
"""No wire amount is this large (a hundred quintillion dollars). Past it, an amount read from a payload could not be
written in cents once a few are added up: :func:`quantize` works in Decimal's default 28 digits and raises
``InvalidOperation`` beyond them (``1E+30`` is a finite decimal all the same)."""


_PLAIN_AMOUNT = re.compile(r"-?\d{1,19}(\.\d{1,20})?", re.ASCII)


def is_plain_amount(value: object) -> bool:
    """Whether ``value`` is an amount as Alpaca writes one (``"-12.50"``: at most 19 digits before the point),
    which :func:`parse_money` accepts, told without building the Decimal (the fast paths of a million rows)."""
    return value.__class__ is str and _PLAIN_AMOUNT.fullmatch(value) is not None


def parse_money(value: object, *, what: str = "amount") -> Decimal:
    """Parse a wire amount (string, int or Decimal) into a Decimal; floats are refused.

    Raises :class:`MalformedDataError` naming ``what`` when the value is not a finite decimal below
    :data:`MAX_AMOUNT` in magnitude.
    """
    if isinstance(value, bool | float):
        raise MalformedDataError(f"{what} must be a decimal string, got {type(value).__name__}")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int | str):
        try:
            result = Decimal(str(value).strip())
        except InvalidOperation as exc:
            raise MalformedDataError(f"{what} is not a decimal: {str(value)[:40]!r}") from exc
    else:
        raise MalformedDataError(f"{what} must be a decimal string, got {type(value).__name__}")
    if not result.is_finite():
        raise MalformedDataError(f"{what} is not a finite decimal: {value!r}")
    if result.copy_abs() >= MAX_AMOUNT:  # copy_abs: abs() rounds in the context, and overflows on 1E+999999999
        raise MalformedDataError(f"{what} is out of range: {str(value)[:40]!r}")
    return result


def quantize(amount: Decimal) -> Decimal:
    """Round to cents, half up (the rounding Alpaca's examples use for interest)."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def has_at_most_cents(amount: Decimal) -> bool:
    """True when ``amount`` needs no more than 2 decimal places (IF create's rule)."""
    return amount == amount.quantize(CENT)


def wire(amount: Decimal) -> str:
    """The wire form of an amount: a string with exactly 2 decimals (``"20.00"``)."""
    return str(quantize(amount))


def display(amount: Decimal) -> str:
    """An amount for people (alert summaries, reports): cents, thousands separated (``"16,500.00"``).

    Machine-read places (the wire, alert facts, audit records) keep :func:`wire`'s form."""
    return f"{quantize(amount):,.2f}"


def late_interest(amount: Decimal, fed_upper_bound: Decimal, days: int = 1) -> Decimal:
    """IF late interest for ``days`` days: ``amount × (fed upper bound + 8 %) / 360``, in cents."""
    return quantize(amount * (fed_upper_bound + LATE_INTEREST_SPREAD) * days / DAYS_IN_INTEREST_YEAR)


def margin_interest(debit: Decimal, annual_rate: Decimal, days: int = 1) -> Decimal:
    """Margin interest on a debit balance for ``days`` days: ``debit × rate / 360`` per day."""
    return quantize(abs(debit) * annual_rate * days / DAYS_IN_INTEREST_YEAR)


_MARKED = re.compile(r'"([0-9a-f]{16}):(-?[0-9]+(?:\.[0-9]+)?)"')
"""A marked Decimal: compiled once (a pattern built around each call's token missed ``re``'s cache and
was compiled anew every time, ~250 µs per event); the token is compared in the replacement."""


def dumps_decimal_numbers(payload: Any) -> str:
    """JSON-encode ``payload`` writing :class:`Decimal` values as JSON numbers, exactly.

    Alpaca's v1 NTA stream sends ``net_amount`` as a JSON number; this renders such payloads without
    ever passing through ``float``.
    """

    token = ""  # drawn at the first Decimal: a marker no string in the payload can forge

    def mark(value: object) -> str:
        nonlocal token
        if isinstance(value, Decimal):
            if not value.is_finite():
                raise ValueError(f"cannot write a non-finite amount as JSON: {value}")
            token = token or secrets.token_hex(8)
            return f"{token}:{value:f}"
        raise TypeError(f"not JSON serializable: {type(value).__name__}")

    text = json.dumps(payload, default=mark, separators=(",", ":"))
    if not token:
        return text
    return _MARKED.sub(lambda m: m[2] if m[1] == token else m[0], text)


_EXACT = json.JSONDecoder(parse_float=Decimal)


def loads_exact(raw: str | bytes) -> Any:
    """Parse JSON keeping every non-integer number as a Decimal (``parse_float=Decimal``).

    Raises ``ValueError`` for anything that does not parse: not JSON, not UTF-8, a number past Decimal's range
    (``1e999999999999999999999``, which ``Decimal`` refuses with ``InvalidOperation``) or nesting deeper than the
    parser follows (``RecursionError``), so that callers catch one error for every way a payload can be unreadable.
    """
    try:
        return _EXACT.decode(raw.decode() if isinstance(raw, bytes) else raw)
    except (InvalidOperation, RecursionError) as exc:
        raise ValueError(f"not readable as JSON: {type(exc).__name__}") from exc
