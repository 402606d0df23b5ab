"""Fuzz broker/client.py: every typed call, answered over real HTTP with what the document allows, mutated, or junk.

Bodies come from the response schemas of contract/alpaca-broker-openapi.yaml (tests/fuzz/openapi.py), then lose
fields, gain fields of any kind, or get values known to be bad for the model the client validates them into; or
the answer is not JSON at all (invalid UTF-8, a number past Decimal's range, nesting past the parser's). Statuses
and ``X-RateLimit-Reset`` headers vary too. Properties: each call returns its typed result or raises the error its
status says, always from the error tree; a 2xx the model cannot hold is a ``MalformedDataError`` (a known-bad value
always is); every amount returned is a finite Decimal that can be written in cents, every instant is aware.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from broker.client import BrokerClient
from broker.rows import plain_listed, plain_transfer
from config.settings import load_settings
from funding import models
from funding.dues import Listed
from funding.errors import (
    AuthenticationError,
    ClientError,
    IdempotencyConflictError,
    MalformedDataError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    SettlekeeperError,
)
from funding.money import loads_exact, wire
from tests.fuzz import openapi
from tests.fuzz.mutate import is_bad, mutate
from tests.fuzz.profiles import examples
from tests.fuzz.rawhttp import RawServer, raw_server, response
from tests.fuzz.wild import BAD_DATES, BAD_IDS, RAW_NUMBERS, bad_money, encode_bytes, not_text

ID = "8e00606a-0000-4000-8000-000000000009"
DAY = date(2026, 11, 23)
ACCOUNT_NO = "7536050SI"
Call = Callable[[BrokerClient], Awaitable[Any]]


@dataclass(frozen=True)
class Endpoint:
    """A typed call and the operation it makes."""

    call: Call
    method: str
    template: str


ENDPOINTS = {
    "get_transfer": Endpoint(lambda c: c.get_transfer(ID), "GET", "/v1/instant_funding/{instant_funding_id}"),
    "list_transfers": Endpoint(lambda c: c.list_transfers(system_date=DAY), "GET", "/v1/instant_funding"),
    "find_account": Endpoint(lambda c: c.find_account(ACCOUNT_NO), "GET", "/v1/accounts"),
    "trade_account": Endpoint(lambda c: c.trade_account(ID), "GET", "/v1/trading/accounts/{account_id}/account"),
    "account": Endpoint(lambda c: c.account(ID), "GET", "/v1/accounts/{account_id}"),
    "create_journal": Endpoint(lambda c: c.create_journal({"entry_type": "JNLC"}, ID), "POST", "/v1/journals"),
    "get_journal": Endpoint(lambda c: c.get_journal(ID), "GET", "/v1/journals/{journal_id}"),
    "create_settlement": Endpoint(lambda c: c.create_settlement({}), "POST", "/v1/instant_funding/settlements"),
    "get_settlement": Endpoint(
        lambda c: c.get_settlement(ID), "GET", "/v1/instant_funding/settlements/{settlement_id}"
    ),
    "list_settlements": Endpoint(lambda c: c.list_settlements(["PENDING"]), "GET", "/v1/instant_funding/settlements"),
    "if_reports": Endpoint(lambda c: c.if_reports("summary", DAY), "GET", "/v1/instant_funding/reports"),
    "jit_report": Endpoint(lambda c: c.jit_report("detail", DAY), "GET", "/v1/transfers/jit/reports"),
    "if_limits": Endpoint(lambda c: c.if_limits(), "GET", "/v1/instant_funding/limits"),
    "jit_limits": Endpoint(lambda c: c.jit_limits(), "GET", "/v1/transfers/jit/limits"),
    "market_days": Endpoint(lambda c: c.market_days("BMO", DAY, DAY), "GET", "/v2/calendar/{market}"),
    "clock": Endpoint(lambda c: c.clock(), "GET", "/v1/clock"),
}
MODELS: dict[str, type[BaseModel]] = {
    "get_transfer": models.InstantFunding,
    "trade_account": models.TradeAccount,
    "account": models.Account,
    "create_journal": models.Journal,
    "get_journal": models.Journal,
    "create_settlement": models.Settlement,
    "get_settlement": models.Settlement,
    "if_limits": models.CorrespondentLimit,
    "jit_limits": models.JITLimits,
}
"""The calls that validate the whole body into one model (their known-bad values are checked field by field)."""
BAD_UUID = st.sampled_from([i for i in BAD_IDS if i]) | not_text().filter(lambda v: not isinstance(v, int | float))
BAD_FOR = {
    "Amount": bad_money(),
    "UUID": BAD_UUID,
    "date": st.sampled_from(BAD_DATES) | st.sampled_from([None, [], "x"]),
    "datetime": st.sampled_from(["2026-11-23T10:00:00", "", "2026-02-30T10:00:00Z", "now", "2026-11-23T25:00:00Z"]),
    "AccountNumber": st.sampled_from(["", "../x", "7536050-SI", "7536050SI\n", "x" * 33]),
}
"""Values each kind of model field refuses (by the annotation's name)."""


def kind_of(model: type[BaseModel], name: str) -> str:
    info = model.model_fields[name]
    if any(getattr(m, "func", None) is models._account_number for m in info.metadata):
        return "AccountNumber"
    if any(getattr(m, "func", None) is models._amount for m in info.metadata):
        return "Amount"
    return getattr(info.annotation, "__name__", "")


def bad_values(model: type[BaseModel]) -> dict[str, st.SearchStrategy[Any]]:
    """The model's fields that must refuse a bad value, each with values it refuses (a required one refuses null)."""
    found = {}
    for name, info in model.model_fields.items():
        kind = kind_of(model, name)
        if kind in BAD_FOR:
            found[name] = (
                BAD_FOR[kind] | st.none() if info.is_required() else BAD_FOR[kind].filter(lambda v: v is not None)
            )
    return found


@dataclass(frozen=True)
class Answer:
    name: str
    status: int
    raw: bytes
    known_bad: bool


ACCOUNT_FIELDS = {"account_no", "source_account_no", "account_number", "source_account_number"}


def repair(body: Any) -> None:
    """Give every account number in ``body`` settlekeeper's shape (letters and digits), as Alpaca's have: the document
    allows any string, so without this nearly no generated transfer would validate, and the paths after a valid
    answer would go untested."""
    if isinstance(body, list):
        for item in body:
            repair(item)
    elif isinstance(body, dict):
        for key, value in body.items():
            if key in ACCOUNT_FIELDS and isinstance(value, str):
                body[key] = ACCOUNT_NO
            else:
                repair(value)


STATUSES = (200, 200, 200, 200, 201, 204, 301, 400, 401, 403, 404, 409, 422, 429, 500, 503)
JUNK = (b"", b"null", b"[]", b"{}", b'"x"', b"\xff\xfe{", b"{not json", b"[" * 100_000, b"10E999999999999999999")


@st.composite
def answers(draw: st.DrawFn, name: str) -> Answer:
    """One answer to ``name``'s request: a documented body mutated, or junk; a status; maybe a rate-limit reset."""
    endpoint, model = ENDPOINTS[name], MODELS.get(name)
    status = draw(st.sampled_from(STATUSES))
    known_bad = False
    if status >= 300:
        body = draw(st.fixed_dictionaries({"code": st.integers(0, 99_999_999), "message": st.text(max_size=30)}))
        raw = draw(st.sampled_from([encode_bytes(body), *JUNK, encode_bytes({"message": "Idempotency key reused"})]))
    elif draw(st.integers(0, 7)) == 0:
        raw = draw(st.sampled_from([*JUNK, *(encode_bytes([r]) for r in RAW_NUMBERS)]))
    else:
        body = draw(openapi.answers(endpoint.method, endpoint.template))
        if draw(st.booleans()):
            repair(body)
        if name == "find_account" and isinstance(body, list) and body and isinstance(body[0], dict):
            body[0]["account_number"] = ACCOUNT_NO  # the row the call looks for
        required = frozenset(n for n, i in model.model_fields.items() if i.is_required()) if model else frozenset()
        body, done = mutate(draw, body, bad=bad_values(model) if model else {}, required=required)
        known_bad = model is not None and is_bad(done, body, required)
        raw = encode_bytes(body)
    headers = [(b"Content-Type", b"application/json"), (b"Connection", b"close")]
    if draw(st.booleans()):
        reset = draw(st.sampled_from(["1713902400", "²", "-1", "9" * 400, "", "1e3"]))
        headers.append((b"X-RateLimit-Reset", reset.encode()))
    return Answer(name, status, response(status, headers, b"" if status == 204 else raw), known_bad)


def expected_error(answer: Answer) -> tuple[type[SettlekeeperError], ...]:
    """The errors the answer may raise: the one its refusal status says, or for a 2xx the model cannot hold
    MalformedDataError (and NotFoundError for an account search without the account)."""
    status, post = answer.status, ENDPOINTS[answer.name].method == "POST"
    if status < 300:
        return (MalformedDataError, NotFoundError) if answer.name == "find_account" else (MalformedDataError,)
    return (refusal(status, post, answer),)


def refusal(status: int, post: bool, answer: Answer) -> type[SettlekeeperError]:
    if status == 429:
        return RateLimitedError
    if status >= 500:
        return ServerError
    if status == 401 or (status == 403 and not post):
        return AuthenticationError
    if status == 404:
        return NotFoundError
    if status == 422 and answer.name == "create_journal" and b"dempotency" in answer.raw:
        return IdempotencyConflictError
    return ClientError


def check_result(result: Any) -> None:
    """Every amount of a result is a finite Decimal writable in cents; every instant in it is aware."""
    if isinstance(result, list):
        for item in result:
            check_result(item)
    elif isinstance(result, BaseModel):
        for name in type(result).model_fields:
            check_result(getattr(result, name))
    elif isinstance(result, Decimal):
        assert result.is_finite()
        wire(result)
    elif isinstance(result, datetime):
        assert result.utcoffset() is not None
    assert not isinstance(result, float)


async def nap(_: float) -> None:
    pass


@pytest.fixture
async def client() -> AsyncIterator[tuple[RawServer, BrokerClient]]:
    """A client of the loopback server (retries at once: its sleep returns at once)."""
    async with (
        raw_server("") as server,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http,
    ):
        broker = BrokerClient(load_settings({}, broker_url=server.url), http, sleep=nap)
        async with broker:
            yield server, broker


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(sorted(ENDPOINTS)).flatmap(answers))
async def test_every_call_returns_its_model_or_raises_from_the_tree(
    client: tuple[RawServer, BrokerClient], answer: Answer
) -> None:
    """A typed call returns a checked result or the error the status says; a known-bad 2xx body never passes."""
    server, broker = client
    server.default = (answer.raw,)
    server.answer()
    try:
        result = await ENDPOINTS[answer.name].call(broker)
    except SettlekeeperError as exc:
        error: SettlekeeperError | None = exc
    else:
        error = None
    if error is not None:
        assert isinstance(error, expected_error(answer)), f"{type(error).__name__}: {error}"
        assert not isinstance(error, RateLimitedError) or error.reset_at is None or error.reset_at >= 0
        return
    assert answer.status < 300, "a refusal returned a result"
    assert not answer.known_bad, f"a known-bad answer passed: {result!r}"[:500]
    check_result(result)


# ---------------------------------------------------------------------- defects the targets found, pinned


@st.composite
def listed_rows(draw: st.DrawFn) -> list[Any]:
    """Rows of a transfer listing as the client reads them (numbers as Decimals): documented, maybe given account
    numbers of settlekeeper's shape, maybe mutated."""
    body = [dict(PLAIN_ROW)] if draw(st.booleans()) else draw(openapi.answers("GET", "/v1/instant_funding"))
    if draw(st.booleans()):
        repair(body)
    model = models.InstantFunding
    required = frozenset(n for n, i in model.model_fields.items() if i.is_required())
    body, _ = mutate(draw, body, bad=bad_values(model), required=required)
    try:
        rows = loads_exact(encode_bytes(body))
    except ValueError:  # a number past Decimal's range: the client refuses the whole answer
        return []
    return rows if isinstance(rows, list) else []


PLAIN_ROW = {
    "id": "4b9a3c4e-8f0d-4c1a-9a57-2c3d1e5f6a7b",
    "account_no": "8100000001",
    "source_account_no": "7536050SI",
    "amount": "25.00",
    "status": "EXECUTED",
    "system_date": "2026-11-23",
    "deadline": "2026-11-24",
    "created_at": "2026-11-23T10:00:00.123456-05:00",
    "remaining_payable": "25.07",
    "total_interest": "0.07",
    "interests": [],
    "fees": [],
}
"""A row as the sandbox and Alpaca's examples write one: it takes the plain path."""


def test_a_plain_row_takes_the_plain_path() -> None:
    """The usual row is read without the model's validation, into the model the validation gives."""
    assert plain_transfer(PLAIN_ROW) == models.InstantFunding.model_validate(PLAIN_ROW)
    assert plain_transfer({**PLAIN_ROW, "status": "SETTLED"}) is None  # unusual: the model's to read


@settings(max_examples=examples(150), deadline=None)
@given(listed_rows())
def test_a_listed_row_reads_on_the_plain_path_exactly_as_the_model_reads_it(rows: list[Any]) -> None:
    """The plain paths (broker/rows.py) either decline a row or give the very model InstantFunding validates, and
    the settle run's columns of it (from the plain row mutated, or any documented row)."""
    for row in rows:
        plain, listed = plain_transfer(row), plain_listed(row)
        assert (plain is None) == (listed is None)  # the same checks decline the same rows
        if plain is not None:
            model = models.InstantFunding.model_validate(row)
            assert (plain, listed) == (model, Listed.of(model))


def answered(status: int, raw: bytes, *headers: tuple[bytes, bytes]) -> bytes:
    return response(status, [(b"Content-Type", b"application/json"), (b"Connection", b"close"), *headers], raw)


@pytest.mark.parametrize("raw", [b"[" * 100_000, b"10E999999999999999999", b'{"id": 1e999999999999999999999}'])
@pytest.mark.parametrize("status", [200, 500])
async def test_regression_unparseable_json_is_malformed_data(
    client: tuple[RawServer, BrokerClient], raw: bytes, status: int
) -> None:
    """Nesting past the recursion limit raised RecursionError, and an exponent past Decimal's range raised
    decimal.InvalidOperation, out of the client; now a 2xx is MalformedDataError and a 5xx keeps its ServerError."""
    server, broker = client
    server.default = (answered(status, raw),)
    with pytest.raises(MalformedDataError if status == 200 else ServerError):
        await broker.get_transfer(ID)


async def test_regression_a_rate_limit_reset_of_superscript_digits_is_unknown(
    client: tuple[RawServer, BrokerClient],
) -> None:
    """``X-RateLimit-Reset: ²`` passed str.isdigit and float() raised ValueError out of the client; now None."""
    server, broker = client
    server.default = (answered(429, b"{}", (b"X-RateLimit-Reset", "²".encode())),)
    with pytest.raises(RateLimitedError) as raised:
        await broker.if_limits()
    assert raised.value.reset_at is None


@pytest.mark.parametrize("raw", [b"", b"[]", b"{}", b'{"timestamp": "soon"}', b'{"timestamp": "2026-11-23T10:00:00"}'])
async def test_regression_a_clock_answer_without_an_aware_timestamp_is_malformed_data(
    client: tuple[RawServer, BrokerClient], raw: bytes
) -> None:
    """GET /v1/clock without a timestamp raised KeyError or TypeError, a bad one ValueError, and a naive one went
    on to raise in the calendar; now each is MalformedDataError."""
    server, broker = client
    server.default = (answered(200, raw),)
    with pytest.raises(MalformedDataError):
        await broker.clock()


NAIVE_TRANSFER = {
    "id": ID,
    "account_no": "8100000001",
    "source_account_no": ACCOUNT_NO,
    "amount": "20.00",
    "status": "EXECUTED",
    "system_date": "2026-11-23",
    "deadline": "2026-11-24",
    "created_at": "2026-11-23T09:00:00",
    "remaining_payable": "20.00",
    "total_interest": "0",
}
NAIVE_SETTLEMENT = {"id": ID, "status": "PENDING", "total_amount": "0.00"}
NAIVE_SETTLEMENT |= {"created_at": "2000-01-01T00:00:00", "updated_at": "2000-01-01T00:00:00Z"}


@pytest.mark.parametrize(("name", "body"), [("get_transfer", NAIVE_TRANSFER), ("get_settlement", NAIVE_SETTLEMENT)])
async def test_regression_an_answer_with_a_naive_instant_is_malformed_data(
    client: tuple[RawServer, BrokerClient], name: str, body: dict[str, str]
) -> None:
    """A settlement (or transfer) with ``"created_at": "2000-01-01T00:00:00"`` validated, its naive instant bound to
    raise TypeError against aware ones (the planner orders transfers by created_at); now MalformedDataError."""
    server, broker = client
    server.default = (answered(200, encode_bytes(body)),)
    with pytest.raises(MalformedDataError, match="created_at"):
        await ENDPOINTS[name].call(broker)
    server.default = (answered(200, encode_bytes({**body, "created_at": "2000-01-01T00:00:00-05:00"})),)
    assert (await ENDPOINTS[name].call(broker)).created_at.utcoffset() is not None


def test_every_endpoint_has_a_documented_answer() -> None:
    """Each typed call's operation documents a 200 answer to generate from (the fuzz target covers every call)."""
    for endpoint in ENDPOINTS.values():
        assert openapi.answers(endpoint.method, endpoint.template) is not None
