"""Ids from events and responses, checked before anything uses them; URL paths from quoted segments.

Data read from a stream or a response never chooses which endpoint an authenticated request reaches, or
which Redis key is written: every id has the shape of its kind before it is used (a UUID, an account
number, a ULID, an ISO date), and a URL path is only ever built by :func:`path` from constant segments
and checked ids, each percent-quoted (``/`` included), so ``../journals`` could never climb out even if
a check were missed. A refused id raises :class:`~funding.errors.MalformedDataError` naming what it was
meant to be; the value is shown truncated, as data, never followed.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import TypeGuard
from urllib.parse import quote

from funding.errors import MalformedDataError

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)
_ACCOUNT_NUMBER = re.compile(r"[0-9A-Za-z]{1,32}")
"""Alpaca's account numbers are letters and digits (``7536050SI``, ``601234567``); 32 is far beyond any."""
_ULID = re.compile(r"[0-7][0-9A-TV-Z]{25}", re.IGNORECASE)
"""26 Crockford base32 characters, the first at most 7 (128 bits); I, L and O are Crockford's aliases of 1,
1 and 0 (Alpaca's own examples use them), U is not a digit."""
_ULID_ALIASES = str.maketrans("ILO", "110")
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
STREAM_PATH = re.compile(r"/v[0-9]+(?:beta[0-9]+)?/events(?:/[a-z_-]+)+")
"""An Alpaca events (SSE) path: configured, or reached by a redirect the stream reader follows."""
_MARKET = re.compile(r"[A-Z]{2,10}")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _shown(value: object) -> str:
    return repr(value)[:60]


def uuid(value: object, what: str) -> str:
    """``value`` as a canonical (lower-case, hyphenated) UUID string; refused otherwise."""
    if not isinstance(value, str) or not _UUID.fullmatch(value):
        raise MalformedDataError(f"{what} is not a UUID: {_shown(value)}")
    return value.lower()


def is_uuid(value: object) -> bool:
    """True for a UUID in its canonical text form."""
    return isinstance(value, str) and bool(_UUID.fullmatch(value))


def is_account_number(value: object) -> TypeGuard[str]:
    """True for an account number (letters and digits)."""
    return isinstance(value, str) and bool(_ACCOUNT_NUMBER.fullmatch(value))


def account_number(value: object, what: str = "account number") -> str:
    """An account number (letters and digits); refused otherwise."""
    if not is_account_number(value):
        raise MalformedDataError(f"{what} is not an account number: {_shown(value)}")
    return value


def market(value: object) -> str:
    """A market code of ``GET /v2/calendar/{market}`` (``NYSE``, ``BMO``): 2 to 10 capital letters."""
    if not isinstance(value, str) or not _MARKET.fullmatch(value):
        raise MalformedDataError(f"market must be 2-10 capital letters, got {_shown(value)}")
    return value


def is_ulid(value: object) -> bool:
    """A ULID (kept as given: a stream resumes from the server's own spelling of it)."""
    return isinstance(value, str) and _ULID.fullmatch(value) is not None


def ulid_order(value: str) -> str:
    """The key two ULIDs are ordered by: upper case, Crockford's aliases decoded (per event on the hot path:
    the common, canonical case costs an ``upper`` and three scans)."""
    upper = value.upper()
    if "I" in upper or "L" in upper or "O" in upper:
        return upper.translate(_ULID_ALIASES)
    return upper


def ulid_time_part(millis: int) -> str:
    """The 10 characters a ULID minted at ``millis`` starts with (ULIDs of later times sort after it)."""
    return "".join(_CROCKFORD[(millis >> shift) & 31] for shift in range(45, -1, -5))


def ulid_moment(value: str) -> datetime:
    """When a ULID was minted: its first 10 characters are the milliseconds since the epoch."""
    millis = 0
    for char in ulid_order(value)[:10]:
        millis = millis * 32 + _CROCKFORD.index(char)
    return datetime.fromtimestamp(millis / 1000, tz=UTC)


def iso_date(value: object, what: str) -> date:
    """An ISO date (``2026-11-24``); refused otherwise."""
    if isinstance(value, str) and _ISO_DATE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise MalformedDataError(f"{what} is not an ISO date: {_shown(value)}")


def path(*segments: str) -> str:
    """``/a/b/c`` from segments, each percent-quoted; an empty, ``.`` or ``..`` segment is refused."""
    for segment in segments:
        if segment in ("", ".", ".."):
            raise MalformedDataError(f"refusing a URL path segment {_shown(segment)}")
    return "/" + "/".join(quote(segment, safe="") for segment in segments)
