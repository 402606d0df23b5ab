"""Sandbox-only admin API under ``/sandbox/`` (docs/sandbox.md "Faults"); never used by the worker in production."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from funding.money import ZERO, wire
from sandbox import wire as render
from sandbox.api import amount_of, parse_instant
from sandbox.event_streams import OPEN_STREAMS
from sandbox.faults import Fault
from sandbox.http import RUNTIME, engine, read_json
from sandbox.state import SandboxError, SeedConfig
from sandbox.synthetic import fill


def _clock_state(request: web.Request) -> dict[str, Any]:
    state = request.app[RUNTIME].clock.state()
    return {"now": render.et_iso(state.now), "frozen": state.frozen, "speed": state.speed}


async def get_clock(request: web.Request) -> web.Response:
    engine(request)
    return web.json_response(_clock_state(request))


async def post_clock(request: web.Request) -> web.Response:
    """``{"set": iso}``, ``{"advance_seconds": n}``, ``{"speed": x}``, ``{"freeze": bool}``; fires due rules."""
    rt = request.app[RUNTIME]
    body = await read_json(request)
    unknown = set(body) - {"set", "advance_seconds", "speed", "freeze"}
    if unknown:
        raise SandboxError(400, f"unknown clock fields: {', '.join(sorted(unknown))}")
    rt.engine.sync()
    try:
        if "freeze" in body:
            rt.clock.freeze(bool(body["freeze"]))
        if "set" in body:
            rt.clock.set(parse_instant(str(body["set"]), "set"))
        if "advance_seconds" in body:
            rt.clock.advance(float(body["advance_seconds"]))
        if "speed" in body:
            rt.clock.set_speed(float(body["speed"]))
    except (TypeError, ValueError) as exc:
        raise SandboxError(400, str(exc)) from None
    rt.engine.sync()
    return web.json_response(_clock_state(request))


async def wires(request: web.Request) -> web.Response:
    """``{"account_no", "amount", "immediate"?}``: booked 08:00–08:30 ET of a banking day unless ``immediate``."""
    eng = engine(request)
    body = await read_json(request)
    credited_at = eng.wire_in(str(body.get("account_no", "")), amount_of(body), immediate=body.get("immediate") is True)
    account = render.sandbox_account(eng.books.account(str(body["account_no"])))
    return web.json_response({**account, "wire_credited_at": render.et_iso(credited_at)})


async def trades(request: web.Request) -> web.Response:
    """A customer buys or sells: ``{"account_no", "symbol", "side", "qty", "price", "commission"?}``."""
    eng = engine(request)
    body = await read_json(request)
    row = eng.jit.trade(
        eng.customer(str(body.get("account_no", ""))),
        str(body.get("symbol", "")).upper() or "AAPL",
        str(body.get("side", "")),
        amount_of(body, "qty"),
        amount_of(body, "price"),
        amount_of(body, "commission") if "commission" in body else ZERO,
    )
    return web.json_response(
        {
            "order_id": row.order_id,
            "account_no": row.account_no,
            "side": row.side,
            "symbol": row.symbol,
            "qty": str(row.qty),
            "price": wire(row.price),
            "net_amt": wire(row.net_amt),
            "system_date": row.system_date.isoformat(),
        }
    )


async def approve_journal(request: web.Request) -> web.Response:
    journal = engine(request).journals.approve(request.match_info["journal_id"])
    return web.json_response(render.journal(journal))


async def reject_journal(request: web.Request) -> web.Response:
    journal = engine(request).journals.reject(request.match_info["journal_id"])
    return web.json_response(render.journal(journal))


async def post_faults(request: web.Request) -> web.Response:
    """Arm one fault (an object) or several (``{"faults": [...]}``)."""
    rt = request.app[RUNTIME]
    body = await read_json(request)
    specs = body.get("faults", [body])
    try:
        faults = [Fault.model_validate(spec) for spec in specs]
    except ValidationError as exc:
        raise SandboxError(400, f"invalid fault: {exc.errors(include_url=False)[0]['msg']}") from None
    rt.faults.arm(faults)
    return web.json_response({"faults": [f.model_dump(mode="json") for f in rt.faults.faults]})


async def get_faults(request: web.Request) -> web.Response:
    """The faults armed now (each with what is left of its ``times``)."""
    return web.json_response({"faults": [f.model_dump(mode="json") for f in request.app[RUNTIME].faults.faults]})


async def delete_faults(request: web.Request) -> web.Response:
    request.app[RUNTIME].faults.clear()
    return web.json_response({"faults": []})


async def get_requests(request: web.Request) -> web.Response:
    """Every Broker API request the sandbox received (latest 100,000): method, raw path, query string, body."""
    rows = [{"method": m, "path": p, "query": q, "body": b} for m, p, q, b in request.app[RUNTIME].requests]
    return web.json_response({"requests": rows})


async def delete_requests(request: web.Request) -> web.Response:
    request.app[RUNTIME].requests.clear()
    return web.json_response({"requests": []})


async def disconnect_streams(request: web.Request) -> web.Response:
    """End every open event stream cleanly, as a deploy on Alpaca's side would; clients reconnect, and a
    stream fault armed since is applied to their next connection."""
    streams = request.app[OPEN_STREAMS]
    before = set(streams)
    streams.closing.set()  # an idle stream returns at once; a busy one after its current batch
    try:
        for _ in range(200):
            if not before & streams:
                break
            await asyncio.sleep(0.01)
    finally:
        streams.closing.clear()
    return web.json_response({"disconnected": len(before), "still_open": len(before & streams)})


async def ledger(request: web.Request) -> web.Response:
    """Every balance change, optionally for one account (``?account_no=``) or after a ``since`` seq."""
    eng = engine(request)
    account_no = request.query.get("account_no")
    since = max(int(request.query.get("since", "0")), 0)
    rows = [
        {
            "seq": seq,
            "at": render.et_iso(e.at),
            "account_no": e.account_no,
            "balance": e.balance,
            "delta": wire(e.delta),
            "after": wire(e.after),
            "reason": e.reason,
            "ref": e.ref,
            "counterparty": e.counterparty,
        }
        for seq, e in enumerate(eng.books.ledger[since:], since + 1)
        if account_no is None or e.account_no == account_no
    ]
    return web.json_response({"entries": rows})


async def accounts(request: web.Request) -> web.Response:
    """Balances, positions, margin-call and liquidation state of every account."""
    eng = engine(request)
    return web.json_response({"accounts": [render.sandbox_account(a) for a in eng.books.by_no.values()]})


async def synthetic(request: web.Request) -> web.Response:
    """Benchmarks: ``{"events": N, "transfers": K, "amounts"?: [...], "render"?: bool, "spend"?: bool}`` appends
    N activity events, K of them real IF transfers (amounts cycled; default 10.00 each); ``spend``: each
    customer buys for what each transfer gave (its cancellation leaves a debit); ``render``: the events' text is
    made now, not when first read (a reader measured first does not pay for it)."""
    eng = engine(request)
    body = await read_json(request)
    try:
        events, transfers = int(body.get("events", 10_000)), int(body.get("transfers", 1_000))
    except (TypeError, ValueError):
        raise SandboxError(400, "events and transfers must be integers") from None
    raw = body.get("amounts", ["10.00"])
    if not isinstance(raw, list):
        raise SandboxError(400, "amounts must be an array of decimal strings")
    amounts = [amount_of({"amount": a}) for a in raw]
    options = {name: body.get(name) is True for name in ("render", "spend")}
    return web.json_response(fill(eng, events, transfers, amounts, **options))


async def marks(request: web.Request) -> web.Response:
    """Benchmarks: the wall-clock time of each cancellation and each journal received (latest 100,000)."""
    rows = [{"what": what, "account_id": account_id, "at": at} for what, account_id, at in engine(request).marks]
    return web.json_response({"marks": rows})


async def reset(request: web.Request) -> web.Response:
    """Replace all state with a fresh seed (the body is a :class:`SeedConfig`, every field optional)."""
    rt = request.app[RUNTIME]
    body = await read_json(request)
    try:
        seed = SeedConfig.model_validate(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        raise SandboxError(400, f"invalid seed field {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    eng = rt.reset(seed)
    return web.json_response(
        {
            "correspondent": seed.correspondent,
            "clock": _clock_state(request),
            "accounts": [render.account(a) for a in eng.books.by_no.values()],
        }
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/sandbox/clock", get_clock)
    app.router.add_post("/sandbox/clock", post_clock)
    app.router.add_post("/sandbox/wires", wires)
    app.router.add_post("/sandbox/trades", trades)
    app.router.add_post("/sandbox/journals/{journal_id}/approve", approve_journal)
    app.router.add_post("/sandbox/journals/{journal_id}/reject", reject_journal)
    app.router.add_get("/sandbox/faults", get_faults)
    app.router.add_post("/sandbox/faults", post_faults)
    app.router.add_delete("/sandbox/faults", delete_faults)
    app.router.add_post("/sandbox/streams/disconnect", disconnect_streams)
    app.router.add_get("/sandbox/requests", get_requests)
    app.router.add_delete("/sandbox/requests", delete_requests)
    app.router.add_get("/sandbox/ledger", ledger)
    app.router.add_get("/sandbox/accounts", accounts)
    app.router.add_post("/sandbox/reset", reset)
    app.router.add_post("/sandbox/synthetic", synthetic)
    app.router.add_get("/sandbox/marks", marks)
