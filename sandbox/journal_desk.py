"""Journals (docs/broker-api.md "Journals"): JNLC between firm and customer accounts, idempotency, JNLC limits,
statuses."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import date
from decimal import Decimal
from typing import Any

from funding.calendar import to_et
from funding.errors import MalformedDataError
from funding.models import JournalStatus
from funding.money import ZERO, has_at_most_cents, parse_money, wire
from sandbox.ground import Ground
from sandbox.state import Account, AccountKind, IdempotencyStore, Journal, SandboxError

_FIXTURE_PENDING = "/fixtures/status=pending/fixtures/"
_FIXTURE_REJECTED = "/fixtures/status=rejected/fixtures/"
CANCELABLE = (JournalStatus.PENDING, JournalStatus.QUEUED)


class JournalDesk:
    def __init__(self, ground: Ground) -> None:
        self.ground = ground
        self.journals: dict[str, Journal] = {}
        self.keys = IdempotencyStore()
        self._refusals: dict[str, SandboxError] = {}
        """A refused journal's key → the refusal Alpaca answers again for that key (docs/sandbox.md)."""
        self._daily_to_customers: defaultdict[date, Decimal] = defaultdict(lambda: ZERO)

    def get(self, journal_id: str) -> Journal:
        try:
            return self.journals[journal_id]
        except KeyError:
            raise SandboxError(404, f"journal {journal_id} not found") from None

    def create(
        self,
        body: dict[str, Any],
        key: str | None,
        fingerprint: str,
        *,
        batch: bool = False,
    ) -> Journal:
        """Validate and book one JNLC; returns the original journal for a repeated key."""
        existing = self.keys.lookup(key, fingerprint)
        if existing in self._refusals:
            raise self._refusals[existing]  # a refusal replays unchanged under its key
        if existing is not None:
            return self.journals[existing]
        try:
            journal = self._build(body, key, batch=batch)
        except SandboxError as refusal:
            if key is not None and refusal.status in (403, 422):
                self._refusals[f"refused:{key}"] = refusal
                self.keys.remember(key, fingerprint, f"refused:{key}")
            raise
        self.keys.remember(key, fingerprint, journal.id)
        self._book(journal)
        return journal

    def create_batch(self, body: dict[str, Any], key: str | None, fingerprint: str) -> list[Journal]:
        """``POST /v1/journals/batch``: one source, many destinations; refused entries say why."""
        existing = self.keys.lookup(key, fingerprint)
        if existing is not None:
            return [j for j in self.journals.values() if j.idempotency_key == key]
        if body.get("entry_type") != "JNLC":
            raise SandboxError(422, "batch journals support entry_type JNLC only")
        entries = body.get("entries")
        if not isinstance(entries, list) or not entries:
            raise SandboxError(400, "entries must be a non-empty array")
        results = []
        for entry in entries:
            if not isinstance(entry, dict):
                raise SandboxError(400, "every entry must be an object")
            single = {**entry, "entry_type": "JNLC", "from_account": body.get("from_account")}
            try:
                journal = self._build(single, key, batch=True)
            except SandboxError as refusal:
                if refusal.status in (400,):
                    raise
                journal = self._refused(single, key, refusal.message)
                results.append(journal)
                continue
            self._book(journal)
            results.append(journal)
        self.keys.remember(key, fingerprint, results[0].id)
        return results

    def _build(self, body: dict[str, Any], key: str | None, *, batch: bool) -> Journal:
        ground = self.ground
        if body.get("entry_type") != "JNLC":
            raise SandboxError(422, "the sandbox supports entry_type JNLC only")
        amount = _amount(body.get("amount"))
        source = ground.books.account_by_id(str(body.get("from_account", "")))
        target = ground.books.account_by_id(str(body.get("to_account", "")))
        if source.id == target.id:
            raise SandboxError(422, "from_account and to_account must differ")
        if not source.is_firm and not target.is_firm:
            raise SandboxError(422, "JNLC between two customer accounts is not allowed")
        if source.kind is AccountKind.DP:
            raise SandboxError(403, f"the DP account {source.number} can never be debited")
        if source.transferable < amount:
            raise SandboxError(
                403,
                f"amount requested to move is not available: {source.number} has "
                f"{wire(source.transferable)} transferable, requested {wire(amount)}",
            )
        description = str(body.get("description") or "")
        fixture = "rejected" if _FIXTURE_REJECTED in description else None
        fixture = "pending" if _FIXTURE_PENDING in description else fixture
        transmitter = {k: v for k, v in body.items() if k.startswith("transmitter_")}
        journal = Journal(
            id=str(uuid.uuid4()),
            entry_type="JNLC",
            from_account=source.id,
            to_account=target.id,
            amount=amount,
            status=JournalStatus.QUEUED,
            description=description,
            created_at=ground.now,
            system_date=ground.system_date,
            transmitter=transmitter,
            idempotency_key=key,
            batch=batch,
            fixture=fixture,
        )
        self.journals[journal.id] = journal
        ground.emit.journal_status(ground.now, journal, "", JournalStatus.QUEUED.value)
        return journal

    def _refused(self, body: dict[str, Any], key: str | None, message: str) -> Journal:
        journal = Journal(
            id=str(uuid.uuid4()),
            entry_type="JNLC",
            from_account=str(body.get("from_account", "")),
            to_account=str(body.get("to_account", "")),
            amount=ZERO,
            status=JournalStatus.REFUSED,
            description=str(body.get("description") or ""),
            created_at=self.ground.now,
            system_date=self.ground.system_date,
            idempotency_key=key,
            batch=True,
            error_message=message,
        )
        self.journals[journal.id] = journal
        return journal

    def _over_limits(self, journal: Journal, target: Account, source: Account) -> bool:
        seed = self.ground.seed
        if target.is_firm and not (source.is_firm and seed.jnlc_limits_apply_to_firm):
            return False  # the limits apply to journals into customer accounts (docs/broker-api.md "Journals")
        used = self._daily_to_customers[journal.system_date]
        return journal.amount > seed.jnlc_transaction_limit or used + journal.amount > seed.jnlc_daily_limit

    def _book(self, journal: Journal) -> None:
        books = self.ground.books
        source, target = books.account_by_id(journal.from_account), books.account_by_id(journal.to_account)
        if journal.fixture is not None or self._over_limits(journal, target, source):
            self._move(journal, JournalStatus.PENDING)
            return
        self._execute(journal)

    def _execute(self, journal: Journal) -> None:
        ground = self.ground
        source = ground.books.account_by_id(journal.from_account)
        target = ground.books.account_by_id(journal.to_account)
        if source.transferable < journal.amount:
            journal.error_message = "amount requested to move is not available"
            self._move(journal, JournalStatus.REJECTED)
            return
        ground.books.post(ground.now, source, "cash", -journal.amount, "journal", journal.id, target.number)
        ground.books.post(ground.now, target, "cash", journal.amount, "journal", journal.id, source.number)
        if not target.is_firm:
            self._daily_to_customers[journal.system_date] += journal.amount
        journal.settle_date = ground.settle_date()
        self._move(journal, JournalStatus.EXECUTED)
        for account, sign in ((source, -1), (target, 1)):
            ground.emit.activity(
                ground.now,
                account,
                "JNLC",
                status="executed",
                net_amount=journal.amount * sign,
                settle_date=journal.settle_date,
                system_date=journal.system_date,
                description=journal.description,
                details={"journal_id": journal.id},
            )
        ground.retry_awaiting()

    def _move(self, journal: Journal, status: JournalStatus) -> None:
        previous = journal.status
        journal.status = status
        self.ground.emit.journal_status(self.ground.now, journal, previous.value, status.value)

    def approve(self, journal_id: str) -> Journal:
        """Sandbox admin: Alpaca ops approve a pending journal; it executes now."""
        journal = self.get(journal_id)
        if journal.status is not JournalStatus.PENDING:
            raise SandboxError(422, f"journal {journal_id} is {journal.status}, not pending")
        self._execute(journal)
        return journal

    def reject(self, journal_id: str) -> Journal:
        journal = self.get(journal_id)
        if journal.status is not JournalStatus.PENDING:
            raise SandboxError(422, f"journal {journal_id} is {journal.status}, not pending")
        self._move(journal, JournalStatus.REJECTED)
        return journal

    def delete(self, journal_id: str) -> None:
        """Cancel a pending or queued journal (``DELETE /v1/journals/{id}``)."""
        journal = self.get(journal_id)
        if journal.status not in CANCELABLE:
            raise SandboxError(422, f"journal {journal_id} is {journal.status} and cannot be canceled")
        self._move(journal, JournalStatus.CANCELED)

    def end_of_day(self) -> None:
        """8 PM ET: journals carrying the ``status=rejected`` fixture are rejected."""
        for journal in self.journals.values():
            if journal.fixture == "rejected" and journal.status is JournalStatus.PENDING:
                self._move(journal, JournalStatus.REJECTED)

    def listing(self, query: dict[str, str]) -> list[Journal]:
        """``GET /v1/journals`` filters: after, before (creation dates), status, entry_type, accounts."""
        after = _date(query.get("after"), "after")
        before = _date(query.get("before"), "before")
        limit = query.get("limit")
        rows = []
        for journal in self.journals.values():
            created = to_et(journal.created_at).date()
            if after is not None and created < after:
                continue
            if before is not None and created > before:
                continue
            if "status" in query and journal.status.value != query["status"]:
                continue
            if "entry_type" in query and journal.entry_type != query["entry_type"]:
                continue
            if "to_account" in query and journal.to_account != query["to_account"]:
                continue
            if "from_account" in query and journal.from_account != query["from_account"]:
                continue
            rows.append(journal)
        if len(rows) > 100_000:
            raise SandboxError(422, "Result set exceeds 100,000 records")
        if limit is not None:
            if not limit.isdigit() or int(limit) < 1:
                raise SandboxError(400, "limit must be a positive integer")
            rows = rows[: int(limit)]
        return rows


def _amount(value: object) -> Decimal:
    try:
        amount = parse_money(value)
    except MalformedDataError as exc:
        raise SandboxError(400, f"invalid amount: {exc}") from None
    if amount <= 0:
        raise SandboxError(422, "amount must be greater than zero")
    if not has_at_most_cents(amount):
        raise SandboxError(422, "amount must have at most 2 decimal places")
    return amount


def _date(value: str | None, name: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        raise SandboxError(400, f"{name} must be a date (YYYY-MM-DD)") from None
