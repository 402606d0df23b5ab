"""Broker API routes of the sandbox (the paths and shapes of docs/broker-api.md)."""

from __future__ import annotations

import bisect
import time as wall
from datetime import date, datetime, timedelta
from typing import Any

from aiohttp import web

from funding.calendar import to_et
from funding.errors import MalformedDataError
from funding.models import IFStatus
from funding.money import ZERO, parse_money, wire
from sandbox import wire as render
from sandbox.faults import tamper_jit_report
from sandbox.http import engine, fingerprint, idempotency_key, read_json, runtime
from sandbox.state import Account, SandboxError, Transfer

IF_SORT_FIELDS = ("created_at", "amount", "deadline")
MAX_ACCOUNTS = 1000


def parse_date(value: str, name: str) -> date:
    """A ``YYYY-MM-DD`` date (the JIT seed's ``MM-DD-YYYY`` is accepted too)."""
    for fmt in ("%Y-%m-%d", "%m-%d-%Y"):
        try:
            return datetime.strptime(value[:10], fmt).date()  # noqa: DTZ007 - a date, not an instant
        except ValueError:
            continue
    raise SandboxError(400, f"{name} must be a date (YYYY-MM-DD), got {value[:40]!r}")


def parse_instant(value: str, name: str) -> datetime:
    """An RFC 3339 date-time with an offset (``Z`` accepted)."""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise SandboxError(400, f"{name} must be an RFC 3339 date-time, got {value[:40]!r}") from None
    if moment.tzinfo is None:
        raise SandboxError(400, f"{name} must carry a timezone offset")
    return moment


def parse_int(value: str | None, name: str, default: int, low: int, high: int, *, status: int = 400) -> int:
    if value is None:
        return default
    if not value.lstrip("-").isdigit() or not low <= int(value) <= high:
        raise SandboxError(status, f"{name} must be an integer from {low} to {high}")
    return int(value)


def amount_of(body: dict[str, Any], name: str = "amount") -> Any:
    try:
        return parse_money(body.get(name), what=name)
    except MalformedDataError as exc:
        raise SandboxError(400, str(exc)) from None


# ---------------------------------------------------------------------- accounts


async def list_accounts(request: web.Request) -> web.Response:
    """The first 1,000 accounts matching the filters, by creation time (``created_after``/``created_before``
    inclusive: how a caller pages), with the ``entities`` named (all when none are)."""
    eng = engine(request)
    q = request.query
    entities = parse_entities(q.get("entities"))
    rows = eng.books.in_creation_order()
    if "created_after" in q:
        after = parse_instant(q["created_after"], "created_after")
        rows = rows[bisect.bisect_left(rows, after, key=lambda a: a.created_at) :]
    if "created_before" in q:
        before = parse_instant(q["created_before"], "created_before")
        rows = rows[: bisect.bisect_right(rows, before, key=lambda a: a.created_at)]
    tokens = q.get("query", "").lower().split()
    if tokens:
        rows = [a for a in rows if all(token in _haystack(a) for token in tokens)]
    if "status" in q and q["status"] != "ACTIVE":
        rows = []
    sort = q.get("sort", "desc")
    if sort not in ("asc", "desc"):
        raise SandboxError(400, "sort must be asc or desc")
    chosen = rows[:MAX_ACCOUNTS] if sort == "asc" else rows[: -MAX_ACCOUNTS - 1 : -1]
    return web.json_response([render.account(a, entities) for a in chosen])


def _haystack(account: Account) -> str:
    return " ".join((account.number, account.given_name, account.family_name, account.email)).lower()


def parse_entities(value: str | None) -> frozenset[str]:
    """``entities``: comma-delimited names from the document's list; none given means all of them."""
    if value is None:
        return render.ENTITIES
    names = frozenset(name for name in value.split(",") if name)
    unknown = sorted(names - render.ENTITIES)
    if unknown:
        known = ", ".join(sorted(render.ENTITIES))
        raise SandboxError(400, f"unknown entities {', '.join(unknown)[:80]}; known: {known}")
    return names


async def get_account(request: web.Request) -> web.Response:
    account = engine(request).books.account_by_id(request.match_info["account_id"])
    return web.json_response(render.account(account, render.ENTITIES))


async def get_trade_account(request: web.Request) -> web.Response:
    eng = engine(request)
    account = eng.books.account_by_id(request.match_info["account_id"])
    return web.json_response(render.trade_account(account, eng.calendar.previous_close(eng.now)))


# ---------------------------------------------------------------------- instant funding


async def create_transfer(request: web.Request) -> web.Response:
    eng = engine(request)
    body = await read_json(request)
    for name in ("account_no", "source_account_no", "amount"):
        if name not in body:
            raise SandboxError(400, f"{name} is required")
    transfer = eng.create_transfer(
        str(body["account_no"]),
        str(body["source_account_no"]),
        amount_of(body),
        idempotency_key(request),
        fingerprint(body),
    )
    return web.json_response(render.transfer(transfer))


async def list_transfers(request: web.Request) -> web.Response:
    eng = engine(request)
    q = request.query
    status = IFStatus(q["status"]) if "status" in q else None
    if status is not None and not status.known:
        raise SandboxError(400, f"status must be one of {', '.join(s.value for s in IFStatus)}")
    system_date = parse_date(q["system_date"], "system_date") if "system_date" in q else None
    deadline = parse_date(q["deadline"], "deadline") if "deadline" in q else None
    before = parse_instant(q["before"], "before") if "before" in q else None
    sort_by = q.get("sort_by", "created_at")
    order = q.get("sort_order", "ASC")
    if sort_by not in IF_SORT_FIELDS:
        raise SandboxError(400, f"sort_by must be one of {', '.join(IF_SORT_FIELDS)}")
    if order not in ("ASC", "DESC"):
        raise SandboxError(400, "sort_order must be ASC or DESC")
    limit = parse_int(q.get("limit"), "limit", 100, 1, 100)
    offset = parse_int(q.get("offset"), "offset", 0, 1, 10**9, status=422)  # the document's minimum is 1

    def build() -> list[Transfer]:
        rows = list(eng.transfers.values())
        if status is not None:
            rows = [t for t in rows if t.status is status]
        if system_date is not None:
            rows = [t for t in rows if t.system_date == system_date]
        if deadline is not None:
            rows = [t for t in rows if t.deadline == deadline]
        if before is not None:
            rows = [t for t in rows if t.created_at < before]
        rows.sort(key=lambda t: (getattr(t, sort_by), t.created_at, t.id), reverse=order == "DESC")
        return rows

    rows = eng.listing((status, system_date, deadline, before, sort_by, order), build)
    return web.json_response([render.transfer(t) for t in rows[offset : offset + limit]])


async def get_transfer(request: web.Request) -> web.Response:
    return web.json_response(render.transfer(engine(request).transfer(request.match_info["transfer_id"])))


async def cancel_transfer(request: web.Request) -> web.Response:
    engine(request).cancel_transfer(request.match_info["transfer_id"])
    return web.Response(status=204)


async def correspondent_limits(request: web.Request) -> web.Response:
    eng = engine(request)
    in_use = eng.amount_in_use()
    limit = eng.seed.if_correspondent_limit
    return web.json_response(
        {"amount_available": wire(limit - in_use), "amount_in_use": wire(in_use), "amount_limit": wire(limit)}
    )


async def account_limits(request: web.Request) -> web.Response:
    eng = engine(request)
    numbers = [n for n in request.query.get("account_numbers", "").split(",") if n]
    if not numbers:
        raise SandboxError(400, "account_numbers is required")
    rows = []
    for number in numbers:
        eng.customer(number)
        in_use = eng.amount_in_use(number)
        limit = eng.seed.if_account_limit if eng.seed.if_account_limit is not None else eng.seed.if_correspondent_limit
        rows.append(
            {
                "account_no": number,
                "amount_available": wire(limit - in_use),
                "amount_in_use": wire(in_use),
                "amount_limit": wire(limit),
            }
        )
    return web.json_response(rows)


async def reports(request: web.Request) -> web.Response:
    """Summary or detail of one settlement cycle (8 PM ET prior day → 8 PM ET on ``system_date``)."""
    eng = engine(request)
    report_type = request.query.get("report_type", "summary")
    if report_type not in ("summary", "detail"):
        raise SandboxError(400, "report_type must be summary or detail")
    day = parse_date(request.query["system_date"], "system_date") if "system_date" in request.query else eng.system_date
    by_source: dict[str, list[Any]] = {}
    for transfer in eng.transfers.values():
        if transfer.system_date == day and transfer.status not in (IFStatus.CANCELED, IFStatus.FAILED):
            by_source.setdefault(transfer.source_account_no, []).append(transfer)
    rows = []
    for source, transfers in sorted(by_source.items()):
        row: dict[str, Any] = {
            "system_date": day.isoformat(),
            "account_no": source,
            "total_amount_owed": wire(sum((t.amount for t in transfers), ZERO)),
            "total_interest_penalty": wire(sum((t.total_interest for t in transfers), ZERO)),
            "deadline": eng.calendar.deadline_for(day).isoformat(),
        }
        if report_type == "detail":
            row["instant_funding_transfers"] = [
                render.transfer(t) for t in sorted(transfers, key=lambda t: t.created_at)
            ]
        rows.append(row)
    return web.json_response(rows)


# ---------------------------------------------------------------------- settlements


async def create_settlement(request: web.Request) -> web.Response:
    eng = engine(request)
    body = await read_json(request)
    transfers = body.get("transfers")
    if not isinstance(transfers, list) or not all(isinstance(t, dict) for t in transfers):
        raise SandboxError(400, "transfers must be an array of objects")
    info = body.get("additional_info")
    settlement = eng.create_settlement(transfers, None if info is None else str(info))
    return web.json_response(render.settlement(settlement))


async def list_settlements(request: web.Request) -> web.Response:
    eng = engine(request)
    wanted = {s for s in request.query.get("statuses", "").split(",") if s}
    rows = [s for s in eng.settlements.values() if not wanted or s.status.value in wanted]
    rows.sort(key=lambda s: s.created_at)
    return web.json_response({"settlements": [render.settlement(s) for s in rows]})


async def get_settlement(request: web.Request) -> web.Response:
    return web.json_response(render.settlement(engine(request).settlement(request.match_info["settlement_id"])))


# ---------------------------------------------------------------------- journals


async def create_journal(request: web.Request) -> web.Response:
    eng = engine(request)
    body = await read_json(request)
    for name in ("from_account", "to_account", "entry_type"):
        if name not in body:
            raise SandboxError(400, f"{name} is required")
    eng.marks.append(("journal", str(body["to_account"])[:40], wall.time()))  # an account id
    journal = eng.journals.create(body, idempotency_key(request), fingerprint(body))
    return web.json_response(render.journal(journal))


async def create_batch_journal(request: web.Request) -> web.Response:
    eng = engine(request)
    body = await read_json(request)
    journals = eng.journals.create_batch(body, idempotency_key(request), fingerprint(body))
    return web.json_response([render.journal(j, batch=True) for j in journals])


async def list_journals(request: web.Request) -> web.Response:
    eng = engine(request)
    return web.json_response([render.journal(j) for j in eng.journals.listing(dict(request.query))])


async def get_journal(request: web.Request) -> web.Response:
    return web.json_response(render.journal(engine(request).journals.get(request.match_info["journal_id"])))


async def delete_journal(request: web.Request) -> web.Response:
    engine(request).journals.delete(request.match_info["journal_id"])
    return web.Response(status=204)


# ---------------------------------------------------------------------- calendar and clock


async def calendar(request: web.Request) -> web.Response:
    eng = engine(request)
    q = request.query
    today = to_et(eng.now).date()
    start = parse_date(q["start"], "start") if "start" in q else today
    end = parse_date(q["end"], "end") if "end" in q else start + timedelta(days=365)
    if q.get("date_type", "TRADING") not in ("TRADING", "SETTLEMENT"):
        raise SandboxError(400, "date_type must be TRADING or SETTLEMENT")
    return web.json_response([render.calendar_day(s) for s in eng.calendar.sessions(start, end)])


async def clock(request: web.Request) -> web.Response:
    eng = engine(request)
    now = eng.clock.now()
    return web.json_response(
        {
            "timestamp": render.et_iso(now),
            "is_open": eng.calendar.is_open(now),
            "next_open": render.et_iso(eng.calendar.next_open(now)),
            "next_close": render.et_iso(eng.calendar.next_close(now)),
        }
    )


# ---------------------------------------------------------------------- JIT


async def jit_reports(request: web.Request) -> web.Response:
    eng = engine(request)
    q = request.query
    if "report_type" not in q or "system_date" not in q:
        raise SandboxError(400, "report_type and system_date are required")
    if q.get("response_type", "inline") != "inline":
        raise SandboxError(422, "the sandbox serves reports inline only (response_type=inline)")
    report_type = q["report_type"].removesuffix(".csv")
    day = parse_date(q["system_date"], "system_date")
    fault = runtime(request).faults.take_jit_report(report_type)
    if fault is not None and fault.mode == "missing":
        raise SandboxError(404, f"injected fault: the {report_type} report for {day} is not available")
    text = eng.jit.report(report_type, day)
    return web.json_response({report_type: text if fault is None else tamper_jit_report(text, fault)})


async def jit_limits(request: web.Request) -> web.Response:
    return web.json_response(engine(request).jit.limits())


async def jit_ledgers(request: web.Request) -> web.Response:
    return web.json_response(engine(request).jit.ledgers())


async def jit_balances(request: web.Request) -> web.Response:
    q = request.query
    if "start_date" not in q or "end_date" not in q:
        raise SandboxError(400, "start_date and end_date are required")
    start = parse_date(q["start_date"], "start_date")
    end = parse_date(q["end_date"], "end_date")
    return web.json_response(engine(request).jit.balances(request.match_info["ledger_id"], start, end))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/accounts", list_accounts)
    app.router.add_get("/v1/accounts/{account_id}", get_account)
    app.router.add_get("/v1/trading/accounts/{account_id}/account", get_trade_account)
    app.router.add_post("/v1/instant_funding", create_transfer)
    app.router.add_get("/v1/instant_funding", list_transfers)
    app.router.add_get("/v1/instant_funding/limits", correspondent_limits)
    app.router.add_get("/v1/instant_funding/limits/accounts", account_limits)
    app.router.add_get("/v1/instant_funding/reports", reports)
    app.router.add_post("/v1/instant_funding/settlements", create_settlement)
    app.router.add_get("/v1/instant_funding/settlements", list_settlements)
    app.router.add_get("/v1/instant_funding/settlements/{settlement_id}", get_settlement)
    app.router.add_get("/v1/instant_funding/{transfer_id}", get_transfer)
    app.router.add_delete("/v1/instant_funding/{transfer_id}", cancel_transfer)
    app.router.add_post("/v1/journals", create_journal)
    app.router.add_post("/v1/journals/batch", create_batch_journal)
    app.router.add_get("/v1/journals", list_journals)
    app.router.add_get("/v1/journals/{journal_id}", get_journal)
    app.router.add_delete("/v1/journals/{journal_id}", delete_journal)
    app.router.add_get("/v1/calendar", calendar)
    app.router.add_get("/v1/clock", clock)
    app.router.add_get("/v1/transfers/jit/reports", jit_reports)
    app.router.add_get("/v1/transfers/jit/limits", jit_limits)
    app.router.add_get("/v1/transfers/jit/ledgers", jit_ledgers)
    app.router.add_get("/v1/transfers/jit/{ledger_id}/balances", jit_balances)
