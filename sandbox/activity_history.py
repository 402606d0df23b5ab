"""``GET /v1/accounts/activities``: the activities the sandbox streamed, as Alpaca's REST history serves them
(``TradeActivity`` for fills, ``NonTradeActivity`` otherwise), with its filters and ``page_token`` paging.

The document's REST ``ActivityType`` has no ``MEM`` and calls a fill ``FILL``: memoposts are only streamed,
and a streamed ``TRD`` is a ``FILL`` here (docs/sandbox.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web

from funding.calendar import to_et
from sandbox.api import parse_date, parse_instant, parse_int
from sandbox.event_log import StoredEvent, StreamName
from sandbox.http import engine
from sandbox.state import SandboxError

STREAM_ONLY = frozenset({"MEM"})
REST_TYPE = {"TRD": "FILL"}


def activity_id(event: StoredEvent, payload: dict[str, Any]) -> str:
    """Alpaca's activity id: the time to the millisecond, ``::``, the record's UUID."""
    return f"{to_et(event.at):%Y%m%d%H%M%S}{event.at.microsecond // 1000:03d}::{payload['ref_id']}"


def render(event: StoredEvent) -> dict[str, Any]:
    payload = event.payload
    common = {"id": activity_id(event, payload), "account_id": payload["account_id"]}
    if payload["activity_type"] == "TRD":
        details = payload.get("details") or {}
        return {
            **common,
            "activity_type": "FILL",
            "transaction_time": payload["at"],
            "type": "fill",
            "price": payload["price"],
            "qty": payload["qty"],
            "side": details.get("side"),
            "symbol": payload["symbol"],
            "leaves_qty": "0",
            "order_id": details.get("order_id"),
            "cum_qty": payload["qty"],
            "order_status": "filled",
        }
    return {
        **common,
        "activity_type": payload["activity_type"],
        "date": (payload.get("details") or {}).get("system_date") or to_et(event.at).date().isoformat(),
        "net_amount": payload["net_amount"],
        "description": payload["description"] or "",
        "status": "canceled" if payload["status"] == "canceled" else "executed",
        "symbol": payload["symbol"],
        "qty": payload["qty"],
        "per_share_amount": None,
        "created_at": payload["at"],
        "currency": "USD",
    }


async def activities(request: web.Request) -> web.Response:
    eng = engine(request)
    q = request.query
    types = {t for part in q.getall("activity_types", []) for t in part.split(",") if t}
    category = q.get("category")
    if category not in (None, "trade_activity", "non_trade_activity"):
        raise SandboxError(400, "category must be trade_activity or non_trade_activity")
    if "date" in q and ("after" in q or "until" in q):
        raise SandboxError(400, "date cannot be combined with after or until")
    day = parse_date(q["date"], "date") if "date" in q else None
    after = parse_instant(q["after"], "after") if "after" in q else None
    until = parse_instant(q["until"], "until") if "until" in q else None
    direction = q.get("direction", "desc")
    if direction not in ("asc", "desc"):
        raise SandboxError(400, "direction must be asc or desc")
    page_size = parse_int(q.get("page_size"), "page_size", 100, 1, 100)
    rows: list[tuple[datetime, dict[str, Any]]] = []
    for event in eng.emit.logs[StreamName.ACTIVITIES].events:
        if "account_id" in q and event.account_id != q["account_id"]:
            continue
        if (day is not None and to_et(event.at).date() != day) or (after and event.at <= after):
            continue
        if until is not None and event.at >= until:
            continue
        streamed = event.payload["activity_type"]
        if streamed in STREAM_ONLY:
            continue
        kind = REST_TYPE.get(streamed, streamed)
        if (types and kind not in types) or (
            category is not None and (kind == "FILL") != (category == "trade_activity")
        ):
            continue
        rows.append((event.at, render(event)))
    rows.sort(key=lambda r: r[1]["id"], reverse=direction == "desc")
    ids = [row["id"] for _, row in rows]
    start = ids.index(q["page_token"]) + 1 if q.get("page_token") in ids else 0
    return web.json_response([row for _, row in rows[start : start + page_size]])


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/accounts/activities", activities)
