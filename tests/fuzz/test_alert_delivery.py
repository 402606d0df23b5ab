"""Fuzz jobs/alert_delivery.py: ``parse_retry_after`` with any header value, and ``_post`` against a loopback server
answering any status, any body in any charset, any ``Retry-After``, broken HTTP or nothing.

The credential is in the URL (Slack's webhook) and in the body (PagerDuty's routing key), and the server may echo it
anywhere in what it answers. Properties: ``parse_retry_after`` gives None or a finite number of seconds, never
raises; ``_post`` returns the first final answer's status (2xx, 3xx, a 4xx but 429) or raises ``RetryableError``
after three answers that were not final, within its waits; the credential, whole or cut, is never in what it
returns or raises.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.utils import format_datetime
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from funding.errors import RetryableError
from jobs.alert_delivery import ATTEMPTS, _post, parse_retry_after
from tests.fuzz.rawhttp import RawServer, raw_server, response
from tests.fuzz.wild import days

CREDENTIAL = "R0secretRoutingKey0123456789abcd"
FINAL = "final"


@st.composite
def http_dates(draw: st.DrawFn) -> str:
    """HTTP dates, well formed or with a year, a zone or an offset of any size."""
    day = draw(days())
    if draw(st.booleans()):
        return format_datetime(draw(st.datetimes()), usegmt=False)
    zone = draw(st.sampled_from(["GMT", "+99999999999999999999", "+0000", "-2359", "EST", "XYZ", ""]))
    year = draw(st.sampled_from([str(day.year), "0", "1", "9999", "99999", "-1"]))
    return f"{day:%a}, {day:%d} {day:%b} {year} {draw(st.integers(0, 99)):02}:00:00 {zone}"


RETRY_AFTER = st.one_of(
    st.sampled_from(["nan", "NaN", "-nan", "inf", "Infinity", "-inf", "1e400", "-5", "0", "1.5", "1_0", "", " 7 "]),
    http_dates(),
    st.text(max_size=20),
)


@given(st.none() | RETRY_AFTER)
def test_retry_after_is_none_or_finite_seconds(value: str | None) -> None:
    """parse_retry_after never raises and gives None or a finite, non-negative number of seconds."""
    seconds = parse_retry_after(value)
    assert seconds is None or (math.isfinite(seconds) and seconds >= 0), seconds


@dataclass(frozen=True)
class Answer:
    """One answer's bytes and whether it is final (the send stops there) or asks for another attempt."""

    raw: bytes
    final: bool
    status: int = 0


CHARSETS = ("utf-8", "latin-1", "utf-16", "ascii", "idna", "hex", "rot13", "base64", "zlib", "bogus", "")
BROKEN = (b"", b"HTTP/1.1 abc\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nx", b"\x00\xff" * 8)
"""No answer, a status line that is none, a body cut short, bytes that are not HTTP."""
STATUSES = (200, 201, 202, 204, 299, 301, 308, 399, 400, 401, 403, 404, 410, 418, 429, 499, 500, 502, 503, 599, 999)


@st.composite
def answers(draw: st.DrawFn) -> Answer:
    """A sink's answer: any status, charset, body (the credential maybe spliced in), Retry-After (of the bytes a header
    value may hold: no control character but tab); or broken HTTP."""
    if draw(st.integers(0, 7)) == 0:
        return Answer(draw(st.sampled_from(BROKEN)), final=False)
    status = draw(st.sampled_from(STATUSES))
    body = draw(st.binary(max_size=40) | st.text(max_size=40).map(str.encode))
    if draw(st.booleans()):  # the sink quotes the credential back, anywhere (the 300-character cut included)
        at = draw(st.integers(0, 320))
        body = b"x" * at + CREDENTIAL.encode() + body
    charset = draw(st.sampled_from(CHARSETS))
    headers = [(b"Content-Type", f"text/plain; charset={charset}".encode()), (b"Connection", b"close")]
    if status == 429 or draw(st.booleans()):
        value = bytes(b for b in draw(RETRY_AFTER).encode() if b == 9 or (b >= 0x20 and b != 0x7F))
        headers.append((b"Retry-After", value.strip()))
    final = 200 <= status < 500 and status != 429
    return Answer(response(status, headers, b"" if status == 204 else body), final, status)


@pytest.fixture
async def sink() -> AsyncIterator[tuple[RawServer, aiohttp.ClientSession]]:
    """A loopback sink (its URL carries the credential, as Slack's does) and a session for _post."""
    timeout = aiohttp.ClientTimeout(total=5)
    async with raw_server(f"/services/{CREDENTIAL}") as server, aiohttp.ClientSession(timeout=timeout) as http:
        yield server, http


def check_redacted(text: str) -> None:
    """No piece of the credential of 4 characters or more: not whole, not cut at the start or the end."""
    assert CREDENTIAL not in text
    for size in range(4, len(CREDENTIAL)):
        assert not text.endswith(CREDENTIAL[:size]), f"the credential's start is in {text[-60:]!r}"
        assert not text.startswith(CREDENTIAL[-size:]), f"the credential's end is in {text[:60]!r}"


async def post(http: aiohttp.ClientSession, url: str) -> tuple[int, str] | RetryableError:
    body: dict[str, Any] = {"routing_key": CREDENTIAL, "event_action": "trigger"}
    try:
        async with asyncio.timeout(10):  # max_wait 0: every wait is 0, so a hang is a defect
            return await _post(http, "pagerduty", url, body, 0.0, CREDENTIAL)
    except RetryableError as exc:
        return exc


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(answers(), min_size=ATTEMPTS, max_size=ATTEMPTS))
async def test_post_returns_the_first_final_answer_or_raises_retryable(
    sink: tuple[RawServer, aiohttp.ClientSession], script: list[Answer]
) -> None:
    """_post returns the first final answer's status and text, credential redacted, or RetryableError after three."""
    server, http = sink
    server.answer(*[(answer.raw,) for answer in script])
    outcome = await post(http, server.url)
    first = next((answer for answer in script if answer.final), None)
    if isinstance(outcome, RetryableError):
        assert first is None, f"a final {first.status if first else 0} answer was retried"
        assert len(server.requests) == ATTEMPTS
        check_redacted(str(outcome))
        return
    status, detail = outcome
    assert first is not None
    assert status == first.status
    assert len(detail) <= 300
    check_redacted(detail)


# ---------------------------------------------------------------------- defects the targets found, pinned


@pytest.mark.parametrize("value", ["nan", "inf", "Infinity", "1e400"])
def test_regression_a_non_finite_retry_after_is_none(value: str) -> None:
    """``Retry-After: nan`` gave NaN (and ``inf`` infinity); asyncio.sleep(nan) never returns, so a 429 with it hung
    the alert job; now a number that is not finite is no Retry-After (the backoff applies)."""
    assert parse_retry_after(value) is None


def test_regression_an_http_date_with_a_huge_offset_is_none() -> None:
    """``Mon, 01 Jan 2001 00:00:00 +99999999999999999999`` raised OverflowError out of parse_retry_after; now None."""
    assert parse_retry_after("Mon, 01 Jan 2001 00:00:00 +99999999999999999999") is None


@pytest.mark.parametrize("charset", ["hex", "rot13", "idna", "base64", "zlib"])
async def test_regression_an_answer_in_a_codec_that_is_no_text_encoding_is_read(
    sink: tuple[RawServer, aiohttp.ClientSession], charset: str
) -> None:
    """``Content-Type: text/plain; charset=hex`` made aiohttp's resp.text() raise LookupError out of _post (idna:
    UnicodeError); now the body is read as UTF-8 whatever the charset says."""
    server, http = sink
    server.answer((response(400, [(b"Content-Type", f"text/plain; charset={charset}".encode())], b"\xffno"),))
    assert await post(http, server.url) == (400, "\ufffdno")


async def test_regression_a_credential_cut_by_the_300_character_limit_is_redacted(
    sink: tuple[RawServer, aiohttp.ClientSession],
) -> None:
    """A 400 quoting the routing key at character 290 came back cut (``…R0secretRo``), and the callers' redaction of
    the whole key missed it; now _post redacts before it cuts."""
    server, http = sink
    server.answer((response(400, [], b"x" * 290 + CREDENTIAL.encode()),))
    outcome = await post(http, server.url)
    assert outcome == (400, "x" * 290 + "[redacted]")
