"""What ``settlekeeper demo`` shows while it runs: one line per notable event, stamped with sandbox time (ET).

Four sources feed it, besides the demo's own actions (:mod:`demo.week`):

- the listener's and the worker's JSON logs (phases enqueued, jobs handed to RQ, stream faults seen);
- the audit trail ``sk:audit`` and the alerts ``sk:alerts`` in Redis (plans, journals, covers, sweeps);
- the sandbox itself, polled over HTTP (settlements, 1 PM interest, 8 PM cancellations, margin calls).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TextIO

import aiohttp
import redis.asyncio as aioredis

from funding.calendar import to_et
from funding.errors import PermanentError
from jobs.settlements import INTENT_TAG
from store import keys

PAGE = 100
"""The sandbox's largest page of ``GET /v1/instant_funding``."""


class DemoError(PermanentError):
    """The demo cannot go on (a process died, the sandbox refused a scripted step)."""


def money(value: object) -> str:
    """``1234.5`` → ``1,234.50`` (amounts arrive as decimal strings)."""
    return f"{Decimal(str(value)):,.2f}"


def short(identifier: str) -> str:
    return identifier[:8]


def day_label(day: date | str) -> str:
    day = date.fromisoformat(day) if isinstance(day, str) else day
    return day.strftime("%a %m-%d")


class SandboxClient:
    """The sandbox's HTTP API (Broker API and ``/sandbox/`` admin), as the demo drives and reads it."""

    def __init__(self, base_url: str, key: str, secret: str) -> None:
        self.base_url = base_url
        self._auth = aiohttp.BasicAuth(key, secret)
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> SandboxClient:
        self._http = aiohttp.ClientSession(auth=self._auth, timeout=aiohttp.ClientTimeout(total=30))
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._http is not None:
            await self._http.close()

    async def call(self, method: str, path: str, body: Any = None, **params: str) -> Any:
        assert self._http is not None, "use SandboxClient as an async context manager"
        async with self._http.request(method, self.base_url + path, json=body, params=params or None) as resp:
            text = await resp.text()
            payload = json.loads(text) if text else None
            if resp.status >= 300:
                message = payload.get("message") if isinstance(payload, dict) else payload
                raise DemoError(f"{method} {path} → HTTP {resp.status}: {message}")
            return payload

    async def transfers(self, **params: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        while True:
            paging = {"offset": str(len(rows))} if rows else {}  # the document's minimum offset is 1
            page = await self.call("GET", "/v1/instant_funding", limit=str(PAGE), **paging, **params)
            rows.extend(page)
            if len(page) < PAGE:
                return rows

    async def settlements(self) -> list[dict[str, Any]]:
        return list((await self.call("GET", "/v1/instant_funding/settlements"))["settlements"])

    async def accounts(self) -> list[dict[str, Any]]:
        """The admin view of every account: cash, memoposts, margin call and liquidation state."""
        return list((await self.call("GET", "/sandbox/accounts"))["accounts"])

    async def journals(self, **params: str) -> list[dict[str, Any]]:
        return list(await self.call("GET", "/v1/journals", **params))


def settled_by(settlement: dict[str, Any]) -> str:
    return "settlekeeper" if str(settlement.get("additional_info", "")).startswith(INTENT_TAG) else "partner"


class Progress:
    """Prints ``<sandbox time ET>  <who>  <what happened>`` lines, flushed at once."""

    def __init__(self, out: TextIO, now: Callable[[], datetime]) -> None:
        self.out = out
        self.now = now

    def say(self, who: str, text: str, at: str | None = None) -> None:
        """One line, stamped ``at`` (an RFC 3339 time the line is about, e.g. a settlement's completion, so the
        line and the report's tables agree) or, without one, the sandbox's time now."""
        moment = datetime.fromisoformat(at) if at else self.now()
        stamp = to_et(moment).strftime("%a %m-%d %H:%M")
        print(f"{stamp}  {who:<9} {text}", file=self.out, flush=True)

    def plain(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)


class Counts:
    """Transfers per settlement, learned from whoever posted it (the demo for the partner, the audit trail
    for settlekeeper), so the settlement lines can say how many transfers they paid."""

    def __init__(self) -> None:
        self.by_settlement: dict[str, int] = {}
        self.by_intent: dict[str, int] = {}

    def of(self, settlement: dict[str, Any]) -> int | None:
        info = str(settlement.get("additional_info", ""))
        if info.startswith(INTENT_TAG):
            return self.by_intent.get(info.removeprefix(INTENT_TAG))
        return self.by_settlement.get(str(settlement["id"]))


# ---------------------------------------------------------------------------------------- process logs

STREAM_EVENTS = {
    "stream_closed": "{stream} stream: closed by the server; reconnecting",
    "stream_connect_failed": "{stream} stream: connect failed ({error}); backing off",
    "stream_dropped_messages": "{stream} stream: server says “{comment}”",
    "stream_rewind": "{stream} stream: rewinding to the last committed cursor",
    "stream_internal_error": "{stream} stream: server sent “internal server error” and closed",
    "stream_refused": "{stream} stream refused: {error}",
    "listener_task_failed": "task {task} failed: {error}",
    "lease_lost": "lost the lease: standing by",
}


class LogLines:
    """Turns the children's JSON log records into progress lines (everything else stays in the log files)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.connected: set[str] = set()
        self.http_port: int | None = None

    def __call__(self, source: str, record: dict[str, Any]) -> None:
        event = str(record.get("event", ""))
        say = self.progress.say
        if event == "listener_started":
            self.http_port = int(record["http_port"])
        elif event == "lease_acquired":
            say("listener", "leader: reading the activities and journals streams")
        elif event == "action_enqueued":
            job_id = str(record["job_id"])
            if record.get("kind") == "cover":
                say("listener", f"a transfer was canceled → cover job {job_id} queued")
            else:
                say("listener", f"a transfer due today changed → re-plan job {job_id} queued")
        elif event == "stream_connected":
            stream = str(record["stream"])
            if stream in self.connected:
                cursor = record.get("cursor")
                say(
                    "listener",
                    f"{stream} stream reconnected, " + (f"resuming at {cursor}" if cursor else "no event yet"),
                )
            self.connected.add(stream)
        elif event in STREAM_EVENTS:
            say("listener", STREAM_EVENTS[event].format_map(_Blank(record)))
        elif record.get("level") in ("error", "critical"):
            say(source, f"ERROR {event} {record.get('error') or record.get('exception', '')}".strip())


class _Blank(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "?"


# ---------------------------------------------------------------------------------------- audit trail


class Trail:
    """Follows ``sk:audit`` and ``sk:alerts`` (XREAD from where it left off)."""

    def __init__(self, client: aioredis.Redis, progress: Progress, counts: Counts) -> None:
        self.redis = client
        self.progress = progress
        self.counts = counts
        self.last = {keys.AUDIT: "0-0", keys.ALERTS: "0-0"}
        self.alerted: set[str] = set()
        self.said: set[tuple[str, str]] = set()

    async def poll(self) -> int:
        found: Any = await self.redis.xread(self.last, count=500)  # type: ignore[arg-type]
        seen = 0
        for stream, entries in found:
            name = _text(stream)
            for entry_id, raw in entries:
                self.last[name] = _text(entry_id)
                fields = {_text(k): _text(v) for k, v in raw.items()}
                if name == keys.ALERTS:
                    self._alert(fields)
                else:
                    self._audit(fields)
                seen += 1
        return seen

    def _alert(self, fields: dict[str, str]) -> None:
        if fields["dedup_key"] in self.alerted:
            return
        self.alerted.add(fields["dedup_key"])
        self.progress.say("ALERT", f"{fields['severity']} {fields['kind']}: {fields['summary']}")

    def _audit(self, fields: dict[str, str]) -> None:
        line = describe(fields, json.loads(fields.get("facts") or "{}"), self.counts)
        if line is None:
            return
        if fields["event"] in ONCE:  # the 20:05 sweep looks at every account again: say the same thing once
            if (fields["event"], fields["key"]) in self.said:
                return
            self.said.add((fields["event"], fields["key"]))
        self.progress.say(*line)


ONCE = {"no_debit", "not_if_debit", "cover_covered", "cover_still_pending", "fund_still_pending"}
QUIET_OUTCOMES = {"nothing_due", "busy", "too_late"}
PHASES = {
    "settle": "settle phase",
    "settle_retry": "settle retry",
    "late_check": "late check",
    "replan": "re-plan",
}
OUTCOMES = {
    "done": "done",
    "nothing_due": "nothing due",
    "refused": "refused (nothing it may pay)",
    "too_late": "too late, the transfers are canceled at 8 PM",
    "in_progress": "still in progress",
}


def describe(fields: dict[str, str], facts: dict[str, Any], counts: Counts) -> tuple[str, str] | None:
    """The progress line of one audit entry, or None for the ones only the report needs."""
    event, key, amount = fields["event"], fields["key"], fields["amount"]
    if event == "plan":
        deadline = day_label(key.removeprefix("settle-"))
        if not facts["selected"]:
            return "settle", f"plan for {deadline}: RF cannot pay any of the {facts['left']} transfers still due"
        text = f"plan for {deadline}: settle {facts['selected']} transfers ({money(amount)})"
        if facts["left"]:
            text += f", leave {facts['left']} (RF short)"
        top_up = Decimal(facts["top_up"])
        return "settle", text + (f"; top SI up from RF by {money(top_up)}" if top_up else "; SI holds enough")
    if event == "report":
        phase, outcome, settled = facts.get("phase", "?"), facts.get("outcome", "?"), facts.get("settled", 0)
        if phase == "replan" and outcome in QUIET_OUTCOMES and not settled:
            return None
        left = len(facts.get("left") or [])
        text = f"{PHASES.get(phase, phase)} for {day_label(facts['deadline'])}"
        text += " (after 1 PM)" if facts.get("late") else ""
        text += ": " + OUTCOMES.get(outcome, outcome.replace("_", " "))
        text += f", {settled} transfers settled" if settled else ""
        text += f", {left} left unsettled" if left else ""
        text += f" ({facts['waiting_for']})" if facts.get("waiting_for") else ""
        return "settle", text
    if event == "settle_sent":
        counts.by_intent[key] = int(facts.get("transfers", 0))
        return None
    if event == "fund_executed":
        return "journal", f"RF → SI {money(amount)} executed ({key})"
    if event == "fund_still_pending" or event == "cover_still_pending":
        target = "SI" if event.startswith("fund") else key.split("-")[1]
        return "journal", f"RF → {target} {money(amount)} is pending: Alpaca must approve it ({key})"
    if event == "cover_planned":
        account = key.split("-")[1]
        return "cover", f"{account} is in debit {money(facts['debit'])}: journal RF → {account} {money(amount)}"
    if event == "cover_executed":
        return "journal", f"RF → {key.split('-')[1]} {money(amount)} executed ({key})"
    if event.startswith("cover_") and event.removeprefix("cover_") in ("covered", "still_in_debit", "failed"):
        what = event.removeprefix("cover_").replace("_", " ")
        return "cover", f"{key.split('-')[1]} {what}: cash now {money(facts['cash'])}"
    if event == "no_debit":
        return "cover", f"{key.split('-')[1]}: no debit (cash {money(facts['cash'])}), nothing to cover"
    if event == "not_if_debit":
        return "cover", f"{key.split('-')[1]}: its debit {money(facts['debit'])} is not from IF, not covered"
    if event == "sweep":
        if not facts.get("accounts"):
            return "sweep", f"{day_label(facts['deadline'])}: no canceled transfers, nothing to cover"
        return (
            "sweep",
            f"{day_label(facts['deadline'])}: {facts['accounts']} accounts with canceled transfers, "
            f"{facts['covered']} covered, {facts['pending']} pending",
        )
    if event.endswith(("_refused", "_dry-run", "_failed", "_abandoned", "_rejected")):
        return fields["kind"], f"{event.replace('_', ' ')} {key} {money(amount) if amount else ''}".rstrip()
    return None


# ---------------------------------------------------------------------------------------- the sandbox


class Watcher:
    """Polls the sandbox for what Alpaca does on its own: settlement processing, 1 PM interest, 8 PM
    cancellations, margin calls and liquidations."""

    def __init__(self, sandbox: SandboxClient, progress: Progress, counts: Counts) -> None:
        self.sandbox = sandbox
        self.progress = progress
        self.counts = counts
        self.transfers: dict[str, dict[str, Any]] = {}
        self.settlements: dict[str, str] = {}
        self.flags: dict[str, tuple[str | None, str | None]] = {}

    async def poll(self) -> None:
        transfers = await self.sandbox.transfers()
        accounts = {a["account_number"]: a for a in await self.sandbox.accounts()}
        self._transfers(transfers, accounts)
        self._settlements(await self.sandbox.settlements())
        self._accounts(accounts)

    def _transfers(self, rows: list[dict[str, Any]], accounts: dict[str, dict[str, Any]]) -> None:
        interest: list[dict[str, Any]] = []
        canceled: list[dict[str, Any]] = []
        for row in rows:
            before = self.transfers.get(row["id"])
            self.transfers[row["id"]] = row
            if before is None:
                continue
            if Decimal(row["total_interest"]) > Decimal(before["total_interest"]):
                interest.append(row)
            if row["status"] == "CANCELED" and before["status"] != "CANCELED":
                canceled.append(row)
        if interest:
            total = sum((Decimal(r["total_interest"]) for r in interest), Decimal(0))
            self.progress.say(
                "alpaca",
                f"1 PM: late interest booked on {len(interest)} unsettled transfers "
                f"due {day_label(interest[0]['deadline'])}: {money(total)}",
            )
        if canceled:
            total = sum((Decimal(r["amount"]) for r in canceled), Decimal(0))
            after = []
            for account_no in sorted({r["account_no"] for r in canceled}):
                cash = Decimal(accounts[account_no]["cash"])
                after.append(f"{account_no} {money(cash)}" + (" DEBIT" if cash < 0 else ""))
            self.progress.say(
                "alpaca",
                f"8 PM: {len(canceled)} unsettled transfers canceled ({money(total)}); cash now " + ", ".join(after),
            )

    def _settlements(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            status, before = row["status"], self.settlements.get(row["id"])
            self.settlements[row["id"]] = status
            if status == before:
                continue
            by, count = settled_by(row), self.counts.of(row)
            what = f"{count} transfers, " if count is not None else ""
            if before is None and by == "settlekeeper":
                posted = f"settlement {short(row['id'])} posted: {what}{money(row['total_amount'])} ({status})"
                self.progress.say("settle", posted, at=row["created_at"])
            if status == "COMPLETED":
                paid = Decimal(row["total_amount"]) + Decimal(row.get("interest_amount") or 0)
                done = f"settlement {short(row['id'])} by {by} COMPLETED: {what}SI paid {money(paid)}"
                self.progress.say("alpaca", done, at=row.get("completed_at") or row["updated_at"])
            elif status in ("FAILED", "AWAITING_ADDITIONAL_FUNDS"):
                reason = f": {row['reason']}" if row.get("reason") else ""
                said = f"settlement {short(row['id'])} by {by} is {status}{reason}"
                self.progress.say("alpaca", said, at=row["updated_at"])

    def _accounts(self, accounts: dict[str, dict[str, Any]]) -> None:
        for number, account in accounts.items():
            flags = (account.get("margin_call_on"), account.get("liquidated_on"))
            before = self.flags.get(number, (None, None))
            self.flags[number] = flags
            if flags[0] and flags[0] != before[0]:
                self.progress.say(
                    "alpaca",
                    f"MARGIN CALL on {number}: cash {money(account['cash'])}; "
                    "its positions are sold at 09:30 on the next trading day if still in debit",
                )
            if flags[1] and flags[1] != before[1]:
                self.progress.say("alpaca", f"LIQUIDATION: positions of {number} sold to cover its debit")


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
