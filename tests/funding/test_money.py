"""Money: Decimal only, half-up cents, exact JSON numbers (funding/money.py)."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import pytest

from funding.calendar import TradingCalendar
from funding.errors import MalformedDataError
from funding.money import (
    dumps_decimal_numbers,
    has_at_most_cents,
    late_interest,
    loads_exact,
    margin_interest,
    parse_money,
    quantize,
    wire,
)


@pytest.mark.parametrize("value", [1.5, 0.1, True, None, [1], {"a": 1}])
def test_parse_money_refuses_non_decimals(value: object) -> None:
    """Floats, booleans and non-scalars are refused with MalformedDataError naming the field."""
    with pytest.raises(MalformedDataError, match="net_amount"):
        parse_money(value, what="net_amount")


@pytest.mark.parametrize("text", ["abc", "1,5", "", "NaN", "Infinity", "-inf"])
def test_parse_money_refuses_non_finite_or_garbage(text: str) -> None:
    """Text that is not a finite decimal is refused."""
    with pytest.raises(MalformedDataError):
        parse_money(text)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("20", Decimal("20")), (" 0.10 ", Decimal("0.10")), (7, Decimal(7)), (Decimal("-3.5"), Decimal("-3.5"))],
)
def test_parse_money_accepts_strings_ints_and_decimals(value: object, expected: Decimal) -> None:
    """Decimal strings (trimmed), integers and Decimals parse to the exact Decimal."""
    result = parse_money(value)
    assert isinstance(result, Decimal)
    assert result == expected


@pytest.mark.parametrize(
    ("amount", "expected"),
    [("0.005", "0.01"), ("0.004", "0.00"), ("2.675", "2.68"), ("-0.005", "-0.01"), ("1.125", "1.13"), ("7", "7.00")],
)
def test_quantize_rounds_half_up_to_cents(amount: str, expected: str) -> None:
    """Quantize rounds to 2 decimals, half away from zero (ROUND_HALF_UP), never banker's rounding."""
    assert str(quantize(Decimal(amount))) == expected


@pytest.mark.parametrize(
    ("amount", "expected"), [("20", "20.00"), ("0", "0.00"), ("-15.256", "-15.26"), ("1E+3", "1000.00")]
)
def test_wire_renders_exactly_two_decimals(amount: str, expected: str) -> None:
    """The wire form of an amount is a string with exactly 2 decimals."""
    assert wire(Decimal(amount)) == expected


@pytest.mark.parametrize(("amount", "expected"), [("20", True), ("20.1", True), ("20.10", True), ("20.101", False)])
def test_has_at_most_cents(amount: str, expected: bool) -> None:
    """Only amounts needing at most 2 decimals pass the IF create rule."""
    assert has_at_most_cents(Decimal(amount)) is expected


@pytest.mark.parametrize(
    ("amount", "fed", "days"),
    [("1000", "0.045", 1), ("20", "0.0450", 1), ("999.99", "0.0525", 1), ("1000", "0.045", 3), ("12345.67", "0", 2)],
)
def test_late_interest_is_amount_times_fed_plus_8_over_360(amount: str, fed: str, days: int) -> None:
    """Late interest = amount × (fed upper bound + 0.08) × days / 360, rounded half-up to the cent."""
    expected = (Decimal(amount) * (Decimal(fed) + Decimal("0.08")) * days / 360).quantize(
        Decimal("0.01"), rounding="ROUND_HALF_UP"
    )
    assert late_interest(Decimal(amount), Decimal(fed), days) == expected


def test_late_interest_known_value() -> None:
    """$1,000 at fed 4.5 % for one day is 1000 × 0.125 / 360 = 0.3472… → 0.35."""
    assert late_interest(Decimal("1000"), Decimal("0.045")) == Decimal("0.35")


def test_margin_interest_over_a_weekend_from_friday() -> None:
    """A debit open on a Friday accrues 3 days of margin interest (Friday → Monday)."""
    friday = date(2026, 11, 20)
    days = TradingCalendar().interest_days(friday)
    debit, rate = Decimal("-2500.00"), Decimal("0.1075")
    expected = (Decimal("2500.00") * rate * 3 / 360).quantize(Decimal("0.01"), rounding="ROUND_HALF_UP")
    assert days == 3
    assert margin_interest(debit, rate, days) == expected
    assert margin_interest(debit, rate, days) == margin_interest(-debit, rate, days)


def test_margin_interest_single_day() -> None:
    """One day of margin interest on a debit uses |debit| × rate / 360."""
    assert margin_interest(Decimal("-360.00"), Decimal("0.10")) == Decimal("0.10")


@pytest.mark.parametrize(
    "value", ["12345678901234567.89", "0.10", "-15.26", "0", "100", "0.000000000000000001", "-99999999999999999999.99"]
)
def test_dumps_decimal_numbers_writes_exact_json_numbers(value: str) -> None:
    """A Decimal renders as a bare JSON number with every digit, and parses back exactly."""
    text = dumps_decimal_numbers({"net_amount": Decimal(value), "label": "x"})
    assert f'"net_amount":{Decimal(value):f}' in text
    assert '"label":"x"' in text
    assert loads_exact(text)["net_amount"] == Decimal(value)


def test_dumps_decimal_numbers_large_value_not_through_float() -> None:
    """12345678901234567.89 keeps its cents (a float would print 1.2345678901234568e+16)."""
    text = dumps_decimal_numbers([Decimal("12345678901234567.89")])
    assert text == "[12345678901234567.89]"
    assert text != json.dumps([float("12345678901234567.89")])


def test_dumps_decimal_numbers_keeps_strings_that_look_like_markers() -> None:
    """Ordinary strings, nested containers and ints pass through unchanged."""
    payload = {"a": ["num:1", {"b": 2}], "c": None, "d": True}
    assert json.loads(dumps_decimal_numbers(payload)) == payload


def test_dumps_decimal_numbers_refuses_unknown_types() -> None:
    """A value JSON cannot express (e.g. a set) is a TypeError, not silently stringified."""
    with pytest.raises(TypeError):
        dumps_decimal_numbers({"x": {1, 2}})


def test_loads_exact_round_trips_numbers_as_decimals() -> None:
    """loads_exact turns non-integer JSON numbers into Decimals and keeps integers as ints."""
    raw = '{"a": 0.1, "b": 10, "c": [20.00, -1.5e2], "d": "0.3"}'
    data = loads_exact(raw)
    assert data == {"a": Decimal("0.1"), "b": 10, "c": [Decimal("20.00"), Decimal("-1.5e2")], "d": "0.3"}
    assert isinstance(data["a"], Decimal)
    assert loads_exact(dumps_decimal_numbers(data)) == data


def test_dumps_decimal_numbers_keeps_strings_shaped_like_another_marker() -> None:
    """A string shaped like a marker (16 hex digits, a colon, a number) stays a string next to real Decimals."""
    payload = {"forged": "0123456789abcdef:12.50", "amount": Decimal("12.50"), "list": ["fedcba9876543210:1"]}
    text = dumps_decimal_numbers(payload)
    assert loads_exact(text) == payload
    assert '"amount":12.50' in text
