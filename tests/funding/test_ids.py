"""Ids from events and responses are checked before use, and URL paths are built from quoted segments."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from ulid import ULID

from funding import ids
from funding.errors import MalformedDataError

HOSTILE = ["../journals", "a/b", "%2e%2e%2fjournals", "", " 1234", "?q=1", "#x", "\u0130", None, 12, {"id": 1}]


def test_a_uuid_is_canonical_lower_case_and_anything_else_is_refused() -> None:
    """A hyphenated UUID passes (lower-cased); paths, spaces, braces, wrong lengths and non-strings do not."""
    assert ids.uuid("0F8FAD5B-D9CB-469F-A165-70867728950E", "transfer id") == "0f8fad5b-d9cb-469f-a165-70867728950e"
    for bad in [*HOSTILE, "{0f8fad5b-d9cb-469f-a165-70867728950e}", "0f8fad5bd9cb469fa16570867728950e"]:
        with pytest.raises(MalformedDataError, match="transfer id is not a UUID"):
            ids.uuid(bad, "transfer id")


def test_an_account_number_is_letters_and_digits() -> None:
    """7536050SI and 601234567 pass; separators, paths and over-long values are refused."""
    assert ids.account_number("7536050SI") == "7536050SI"
    for bad in [*HOSTILE, "8100-0001", "x" * 33]:
        with pytest.raises(MalformedDataError, match="not an account number"):
            ids.account_number(bad)


def test_ulids_are_checked_and_ordered_with_crockfords_aliases() -> None:
    """Real ULIDs (and Alpaca's examples, which use the aliases I, L, O) pass; 'zzzz…', a first character
    over 7 and a U do not; aliases order as the digits they stand for."""
    assert ids.is_ulid(str(ULID()))
    assert ids.is_ulid("01J9RTPZGHKVB8M3X4F5J7LCQ9")
    for bad in [*HOSTILE, "z" * 26, "8" + "0" * 25, "0" * 25 + "U", "0" * 27]:
        assert not ids.is_ulid(bad)
    assert ids.ulid_order("01L0") == ids.ulid_order("0110") < ids.ulid_order("0112")


def test_the_time_part_of_a_ulid_sorts_with_the_ulids_of_that_time() -> None:
    """ulid_time_part(ms) is the prefix python-ulid gives a ULID of that millisecond."""
    moment = datetime(2026, 11, 24, 17, 0, tzinfo=UTC)
    millis = int(moment.timestamp() * 1000)
    assert ids.ulid_time_part(millis) == str(ULID.from_timestamp(moment.timestamp()))[:10]
    assert ids.ulid_time_part(millis + 1) > ids.ulid_time_part(millis)


def test_an_iso_date_is_a_date_and_nothing_else() -> None:
    """2026-11-24 passes; a path or a datetime string does not."""
    assert ids.iso_date("2026-11-24", "system_date") == date(2026, 11, 24)
    for bad in ["../../v1/journals", "2026-11-24T00:00:00Z", "2026-13-01", None]:
        with pytest.raises(MalformedDataError, match="system_date is not an ISO date"):
            ids.iso_date(bad, "system_date")


def test_paths_are_built_from_quoted_segments_and_dot_segments_are_refused() -> None:
    """Every segment is percent-quoted (its slashes too), so it cannot climb; '.', '..' and '' are refused."""
    assert ids.path("v1", "instant_funding", "x/../../journals") == "/v1/instant_funding/x%2F..%2F..%2Fjournals"
    assert ids.path("v1", "a b?c#d") == "/v1/a%20b%3Fc%23d"
    for bad in ("..", ".", ""):
        with pytest.raises(MalformedDataError, match="refusing a URL path segment"):
            ids.path("v1", bad)
