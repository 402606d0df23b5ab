"""A day that touches every Broker API endpoint and event stream the sandbox implements, every answer and
event recorded into a Coverage for checking against Alpaca's document."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

from tests.support.contract import Coverage
from tests.support.sandbox import MONDAY_10AM, Sandbox
from tests.support.sse import ACTIVITIES, JOURNALS, NTA, open_stream

SI, RF = "7536050SI", "7536050RF"


class Recorder:
    """Sends requests to the sandbox and records each answer (status and body) in the coverage."""

    def __init__(self, sandbox: Sandbox, coverage: Coverage) -> None:
        self.sandbox = sandbox
        self.coverage = coverage

    async def call(self, method: str, path: str, body: Any = None, *, expect: int = 200, **kw: Any) -> Any:
        status, payload = await self.sandbox.call(method, path, body, **kw)
        if status != expect:
            self.coverage.violations.append(f"{method} {path}: answered {status}, not {expect}: {payload}")
        self.coverage.answer(method, path, status, payload)
        return payload


async def drive_rest(sandbox: Sandbox, coverage: Coverage) -> None:
    """Every REST endpoint, with the answers a partner sees on a normal day and its refusals."""
    r = Recorder(sandbox, coverage)
    accounts = await r.call("GET", "/v1/accounts")
    await r.call("GET", "/v1/accounts", params={"query": SI, "sort": "asc"})
    ids = {row["account_number"]: row["id"] for row in accounts}
    customer_no = next(no for no in ids if no not in (SI, RF) and not no.startswith("7536050"))
    for number in (customer_no, SI, RF):
        await r.call("GET", f"/v1/accounts/{ids[number]}")
        await r.call("GET", f"/v1/trading/accounts/{ids[number]}/account")
    await r.call("GET", f"/v1/accounts/{uuid.uuid4()}", expect=404)

    body = {"account_no": customer_no, "source_account_no": SI, "amount": "40.00"}
    created = await r.call("POST", "/v1/instant_funding", body, headers={"Idempotency-Key": str(uuid.uuid4())})
    doomed = await r.call("POST", "/v1/instant_funding", {**body, "amount": "5.00"})
    await r.call("POST", "/v1/instant_funding", {**body, "amount": "-1"}, expect=422)
    await sandbox.advance(2)
    await r.call("GET", "/v1/instant_funding")
    await r.call("GET", "/v1/instant_funding", params={"status": "EXECUTED", "sort_order": "DESC", "limit": "10"})
    await r.call("GET", f"/v1/instant_funding/{created['id']}")
    await r.call("DELETE", f"/v1/instant_funding/{doomed['id']}", expect=204)
    await r.call("GET", f"/v1/instant_funding/{uuid.uuid4()}", expect=404)
    await r.call("GET", "/v1/instant_funding/limits")
    await r.call("GET", "/v1/instant_funding/limits/accounts", params={"account_numbers": customer_no})
    await r.call("GET", "/v1/instant_funding/reports")
    await r.call("GET", "/v1/instant_funding/reports", params={"report_type": "detail"})

    journal = {"from_account": ids[RF], "to_account": ids[SI], "entry_type": "JNLC", "amount": "100.00"}
    booked = await r.call("POST", "/v1/journals", journal, headers={"Idempotency-Key": str(uuid.uuid4())})
    pending = await r.call(
        "POST", "/v1/journals", {**journal, "description": "hold /fixtures/status=pending/fixtures/"}
    )
    await r.call("POST", "/v1/journals", {**journal, "entry_type": "JNLX"}, expect=422)
    batch = {
        "entry_type": "JNLC",
        "from_account": ids[RF],
        "entries": [
            {"to_account": ids[customer_no], "amount": "10.00"},
            {"to_account": ids[customer_no], "amount": "900.00"},
        ],
    }
    await r.call("POST", "/v1/journals/batch", batch)
    await r.call("GET", "/v1/journals")
    await r.call("GET", "/v1/journals", params={"entry_type": "JNLC", "to_account": ids[SI]})
    await r.call("GET", f"/v1/journals/{booked['id']}")
    await r.call("DELETE", f"/v1/journals/{pending['id']}", expect=204)
    held = await r.call("POST", "/v1/journals", {**journal, "description": "/fixtures/status=pending/fixtures/"})
    await sandbox.ok("POST", f"/sandbox/journals/{held['id']}/reject")
    await r.call("GET", f"/v1/journals/{held['id']}")
    await r.call("POST", "/v1/instant_funding", {**body, "amount": "7.00"})  # left unsettled: interest, then canceled

    await sandbox.advance(60)
    settle = {"transfers": [{"instant_transfer_id": created["id"]}], "additional_info": "conformance"}
    settlement = await r.call("POST", "/v1/instant_funding/settlements", settle)
    await r.call("GET", "/v1/instant_funding/settlements")
    await r.call("GET", "/v1/instant_funding/settlements", params={"statuses": "PENDING,COMPLETED"})
    await r.call("GET", f"/v1/instant_funding/settlements/{settlement['id']}")
    await sandbox.advance(60)
    await r.call("GET", f"/v1/instant_funding/settlements/{settlement['id']}")

    await r.call("GET", "/v1/accounts/activities")
    await r.call("GET", "/v1/accounts/activities", params={"account_id": ids[customer_no], "direction": "asc"})
    await r.call("GET", "/v1/accounts/activities", params={"category": "trade_activity"})
    await r.call("GET", "/v1/calendar", params={"start": "2026-11-20", "end": "2026-12-31"})
    await r.call("GET", "/v1/clock")
    for market in ("NYSE", "BMO"):
        await r.call("GET", f"/v2/calendar/{market}", params={"start": "2026-10-01", "end": "2026-11-30"})
        await r.call("GET", f"/v2/calendar/{market}", params={"timezone": "UTC"})
    await r.call("GET", "/v2/calendar/NOPE", expect=400)
    await r.call("GET", "/v2/clock")
    await r.call("GET", "/v2/clock", params={"markets": "NYSE,BMO", "time": "2026-10-12T12:00:00-04:00"})
    await sandbox.ok("POST", "/sandbox/trades", {"account_no": customer_no, "side": "buy", "qty": "1", "price": "10"})
    day = MONDAY_10AM.date().isoformat()
    await sandbox.set_clock(MONDAY_10AM.replace(hour=23, minute=45))  # the day's JIT reports are out
    for report in ("detail", "net_summary"):
        await r.call("GET", "/v1/transfers/jit/reports", params={"report_type": report, "system_date": day})
    await r.call("GET", "/v1/transfers/jit/limits")
    ledgers = await r.call("GET", "/v1/transfers/jit/ledgers")
    ledger_ids = [row["id"] for row in ledgers]
    end = (MONDAY_10AM + timedelta(days=1)).date().isoformat()
    for ledger_id in ledger_ids:
        await r.call("GET", f"/v1/transfers/jit/{ledger_id}/balances", params={"start_date": day, "end_date": end})
    tuesday = MONDAY_10AM + timedelta(days=1)
    for hour in (13, 20):  # late interest at 1 PM ET, the cancellation at 8 PM ET of the deadline day
        await sandbox.set_clock(tuesday.replace(hour=hour, minute=5))
    await r.call("GET", "/v1/instant_funding", params={"status": "CANCELED"})


async def drive_streams(sandbox: Sandbox, coverage: Coverage) -> None:
    """Replay each stream from the start of the day and record every event it sends."""
    until = (await sandbox.ok("GET", "/sandbox/clock"))["now"]
    await sandbox.advance(1)  # a stream ends once the sandbox time is past its until
    for path in (ACTIVITIES, JOURNALS, NTA):
        async with open_stream(sandbox, path, {"since": MONDAY_10AM.date().isoformat(), "until": until}) as stream:
            assert stream.resp.status == 200
            await stream.read_to_end(within=3)
        for text in stream.data:
            coverage.event(path, json.loads(text, parse_float=Decimal))
