"""The sandbox engine: instant funding, settlements and the business timeline (docs/broker-api.md "Business dates and
the timeline", "Settlements").

Every handler calls :meth:`Engine.sync` first, which fires, in time order, every rule that fell due
since the last call: IF execution, settlement processing, 1 PM interest, 8 PM cancellation,
margin call (T+2) and liquidation (T+3). Mutations never await, so concurrent requests on the one
event loop cannot interleave inside a rule.
"""

from __future__ import annotations

import contextlib
import gc
import heapq
import time as wall
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from string import Template

from funding.banking import BankingCalendar
from funding.calendar import CYCLE_CUTOFF, SETTLEMENT_CUTOFF, TradingCalendar, at_et, to_et
from funding.models import IFStatus, SettlementStatus
from funding.money import ZERO, has_at_most_cents, late_interest, wire
from sandbox.books import Books
from sandbox.clock_control import SandboxClock
from sandbox.emitter import Emitter
from sandbox.jit import JitDesk
from sandbox.journal_desk import JournalDesk
from sandbox.state import (
    Account,
    AccountKind,
    IdempotencyStore,
    InterestEntry,
    SandboxError,
    SeedConfig,
    Settlement,
    Transfer,
)

MAX_TRANSFERS_PER_SETTLEMENT = 50_000
IF_COUNTERPARTY = "Alpaca (instant funding)"
"""Ledger counterparty of memoposted buying power: Alpaca fronts it; SI pays it back at settlement."""
MEMOPOST = Template("type: instant_funding_memopost, transfer_id: $transfer_id")
DEPOSIT = Template("type: instant_funding_deposit, transfer_id: $transfer_id, settlement_id: $settlement_id")
"""The descriptions of a transfer's activities, written from each event's details when it is read."""
MARGIN_CALL_TIME = time(9, 0)
LIQUIDATION_TIME = time(9, 30)
REQUIRED_TRANSMITTER_FIELDS = (
    "originator_full_name",
    "originator_country",
    "originator_bank_account_number",
    "originator_bank_name",
)


@dataclass(order=True)
class _Timer:
    at: datetime
    seq: int
    action: Callable[[], None] = field(compare=False)


MAX_MARKS = 100_000
"""Wall-clock marks kept (the latest)."""


@contextlib.contextmanager
def bulk() -> Iterator[None]:
    """The cyclic garbage collector paused for one bulk step (a context or a decorator): a settlement's 50,000
    transfers, an 8 PM cancellation, a synthetic fill. What such a step makes holds no cycles, and with a million
    transfers held each collection would walk them all, doubling the step's time. After it, everything the
    sandbox holds is moved out of the collector's sight (``gc.freeze``): later collections, in the handlers of
    the requests that follow, walk only what those make (the objects are still freed when no longer used)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


class Engine:
    """All sandbox state and rules; one instance per sandbox, rebuilt by ``POST /sandbox/reset``."""

    def __init__(self, seed: SeedConfig, clock: SandboxClock, calendar: TradingCalendar) -> None:
        self.seed = seed
        self.clock = clock
        self.calendar = calendar
        if seed.now is not None:
            clock.set(seed.now)
        if seed.freeze:
            clock.freeze()
        self.now = clock.now()
        self.processed_until = self.now
        self.books = Books()
        self.books.seed(seed, self.now)
        self.emit = Emitter()
        self.transfers: dict[str, Transfer] = {}
        self.transfers_version = 0
        """Bumped on every change to a transfer, so a listing can be cached until the next one."""
        self._in_use: dict[str, Decimal] = {}
        """Account number → amount of its unsettled transfers (kept in step, so limit checks are O(1))."""
        self._in_use_total = ZERO
        self._listings: dict[tuple[object, ...], list[Transfer]] = {}
        self._listings_version = 0
        self.settlements: dict[str, Settlement] = {}
        self.if_keys = IdempotencyStore()
        self.journals = JournalDesk(self)
        self.jit = JitDesk(self)
        self._timers: list[_Timer] = []
        self._timer_seq = 0
        self.banking = BankingCalendar()
        self.marks: deque[tuple[str, str, float]] = deque(maxlen=MAX_MARKS)
        """(what, account id, wall-clock time) of each cancellation and each journal received: what
        ``GET /sandbox/marks`` shows benchmarks timing a cancellation's cover on one clock."""

    # ------------------------------------------------------------------ timeline

    def sync(self) -> None:
        """Fire every rule due up to the sandbox clock's current time."""
        self.advance_to(self.clock.now())

    def advance_to(self, target: datetime) -> None:
        self.now = min(self.now, target)  # clock set back: act at its time; rules already fired stay fired
        while True:
            due = self._next_due(target)
            if due is None:
                break
            at, action = due
            self.now = max(self.now, at)
            action()
        if target > self.processed_until:
            self.processed_until = target
        self.now = max(self.now, target)

    def schedule(self, at: datetime, action: Callable[[], None]) -> None:
        self._timer_seq += 1
        heapq.heappush(self._timers, _Timer(at, self._timer_seq, action))

    def _next_due(self, target: datetime) -> tuple[datetime, Callable[[], None]] | None:
        boundary = self._next_boundary(self.processed_until, target)
        if self._timers and self._timers[0].at <= target:
            timer = self._timers[0]
            if boundary is None or timer.at <= boundary[0]:
                heapq.heappop(self._timers)
                self.processed_until = max(self.processed_until, timer.at)
                return timer.at, timer.action
        if boundary is not None:
            self.processed_until = boundary[0]
            return boundary
        return None

    def _next_boundary(self, after: datetime, target: datetime) -> tuple[datetime, Callable[[], None]] | None:
        """The first daily business time in (after, target] on a trading day, with its rule."""
        day = to_et(after).date()
        last = to_et(target).date()
        while day <= last:
            if self.calendar.is_trading_day(day):
                for clock_time, rule in (
                    (MARGIN_CALL_TIME, self._margin_calls),
                    (LIQUIDATION_TIME, self._liquidations),
                    (SETTLEMENT_CUTOFF, self._book_late_interest),
                    (CYCLE_CUTOFF, self._cancel_unsettled),
                ):
                    moment = at_et(day, clock_time)
                    if after < moment <= target:
                        return moment, (lambda r=rule, d=day: r(d))
            day += timedelta(days=1)
        return None

    # ------------------------------------------------------------------ helpers

    @property
    def system_date(self) -> date:
        """The system date of the currently open settlement cycle."""
        return self.calendar.system_date_for(self.now)

    def settle_date(self) -> date:
        return self.calendar.trading_day_on_or_after(to_et(self.now).date())

    def customer(self, account_no: str) -> Account:
        account = self.books.account(account_no)
        if account.is_firm:
            raise SandboxError(422, f"account {account_no} is a firm account, not a customer account")
        return account

    def transfer(self, transfer_id: str) -> Transfer:
        try:
            return self.transfers[transfer_id]
        except KeyError:
            raise SandboxError(404, f"instant funding transfer {transfer_id} not found") from None

    def settlement(self, settlement_id: str) -> Settlement:
        try:
            return self.settlements[settlement_id]
        except KeyError:
            raise SandboxError(404, f"settlement {settlement_id} not found") from None

    def amount_in_use(self, account_no: str | None = None) -> Decimal:
        """Limit consumed by transfers not yet settled or canceled (IF FAQ limit table)."""
        if account_no is None:
            return self._in_use_total
        return self._in_use.get(account_no, ZERO)

    def _use_limit(self, transfer: Transfer, sign: int) -> None:
        """A transfer starts (+1) or stops (-1) consuming the limits: created, or settled or canceled."""
        delta = transfer.amount if sign > 0 else -transfer.amount
        self._in_use[transfer.account_no] = self._in_use.get(transfer.account_no, ZERO) + delta
        self._in_use_total += delta

    def touched(self) -> None:
        """A transfer changed: cached listings are stale."""
        self.transfers_version += 1

    def listing(self, key: tuple[object, ...], build: Callable[[], list[Transfer]]) -> list[Transfer]:
        """``build()`` (a filtered, sorted listing), reused for the same ``key`` until a transfer changes.

        A client paging through 100,000 transfers would otherwise filter and sort them all once per page.
        """
        if self._listings_version != self.transfers_version:
            self._listings.clear()
            self._listings_version = self.transfers_version
        if key not in self._listings:
            self._listings[key] = build()
        return self._listings[key]

    # ------------------------------------------------------------------ instant funding

    def create_transfer(
        self, account_no: str, source_account_no: str, amount: Decimal, key: str | None, fingerprint: str
    ) -> Transfer:
        existing = self.if_keys.lookup(key, fingerprint)
        if existing is not None:
            return self.transfers[existing]
        if amount <= 0:
            raise SandboxError(422, "amount must be greater than zero", suffix=2)
        if not has_at_most_cents(amount):
            raise SandboxError(422, "amount must have at most 2 decimal places", suffix=3)
        account = self.customer(account_no)
        source = self.books.account(source_account_no)
        if source.kind is not AccountKind.SI:
            raise SandboxError(422, f"source_account_no {source_account_no} is not the SI account", suffix=4)
        available = self.seed.if_correspondent_limit - self.amount_in_use()
        if amount > available:
            raise SandboxError(
                403, f"instant funding limit exceeded: available {wire(available)}, requested {wire(amount)}"
            )
        if self.seed.if_account_limit is not None:
            account_available = self.seed.if_account_limit - self.amount_in_use(account_no)
            if amount > account_available:
                raise SandboxError(
                    403,
                    f"account {account_no} instant funding limit exceeded: "
                    f"available {wire(account_available)}, requested {wire(amount)}",
                    suffix=1,
                )
        system_date = self.calendar.system_date_for(self.now)
        transfer = Transfer(
            id=str(uuid.uuid4()),
            account_no=account.number,
            source_account_no=source.number,
            amount=amount,
            status=IFStatus.PENDING,
            system_date=system_date,
            deadline=self.calendar.deadline_for(system_date),
            created_at=self.now,
            updated_at=self.now,
        )
        self.transfers[transfer.id] = transfer
        self._use_limit(transfer, +1)
        self.touched()
        self.if_keys.remember(key, fingerprint, transfer.id)
        delay = timedelta(seconds=self.seed.if_execute_delay_seconds)
        if delay:
            self.schedule(self.now + delay, lambda: self._execute(transfer))
        else:
            self._execute(transfer)
        return transfer

    def _execute(self, transfer: Transfer) -> None:
        """PENDING → EXECUTED: book the memopost; buying power is live (Alpaca's IF FAQ)."""
        if transfer.status is not IFStatus.PENDING:
            return
        account = self.books.account(transfer.account_no)
        self.books.post(self.now, account, "cash", transfer.amount, "instant funding", transfer.id, IF_COUNTERPARTY)
        self.books.post(
            self.now, account, "memoposts", transfer.amount, "instant funding", transfer.id, IF_COUNTERPARTY
        )
        transfer.status = IFStatus.EXECUTED
        transfer.executed = True
        transfer.updated_at = self.now
        self.touched()
        transfer.mem_activity_id = self.emit.activity(
            self.now,
            account,
            "MEM",
            status="executed",
            net_amount=ZERO,
            qty=transfer.amount,
            symbol="INSTANTUSD",
            settle_date=transfer.system_date,
            system_date=transfer.system_date,
            description=MEMOPOST,
            details={"transfer_id": transfer.id, "group_id": None},
        )

    def cancel_transfer(self, transfer_id: str) -> None:
        """``DELETE /v1/instant_funding/{id}``: only an unsettled transfer outside a settlement."""
        transfer = self.transfer(transfer_id)
        if not transfer.unsettled:
            raise SandboxError(422, f"transfer {transfer_id} is {transfer.status} and cannot be canceled")
        if transfer.settlement_id is not None:
            raise SandboxError(
                422, f"transfer {transfer_id} is part of settlement {transfer.settlement_id} in progress"
            )
        self._cancel(transfer, "canceled by partner")

    def _cancel(self, transfer: Transfer, why: str) -> None:
        """Remove the memopost; the customer's own cash offsets it (negative cash = debit balance)."""
        account = self.books.account(transfer.account_no)
        if transfer.executed:
            self.books.post(self.now, account, "memoposts", -transfer.amount, why, transfer.id, IF_COUNTERPARTY)
            self.books.post(self.now, account, "cash", -transfer.amount, why, transfer.id, IF_COUNTERPARTY)
        transfer.status = IFStatus.CANCELED
        transfer.updated_at = self.now
        self.marks.append(("canceled", account.id, wall.time()))
        self._use_limit(transfer, -1)
        self.touched()
        self._mem_canceled(
            transfer, account, self.settle_date(), f"type: instant_funding_memopost, transfer_id: {transfer.id}, {why}"
        )

    def _mem_canceled(
        self, transfer: Transfer, account: Account, settle_date: date, description: str | Template
    ) -> None:
        """The MEM activity of ``transfer`` goes ``canceled`` (settled, or canceled at 8 PM or by the partner)."""
        self.emit.activity(
            self.now,
            account,
            "MEM",
            status="canceled",
            net_amount=ZERO,
            qty=transfer.amount,
            symbol="INSTANTUSD",
            settle_date=settle_date,
            system_date=transfer.system_date,
            description=description,
            details={"transfer_id": transfer.id, "group_id": None},
            previous_id=transfer.mem_activity_id,
        )

    def _book_late_interest(self, day: date) -> None:
        """1 PM ET on the deadline: one day of late interest on every unsettled transfer (docs/broker-api.md
        "Business dates and the timeline")."""
        for transfer in self.transfers.values():
            if transfer.deadline != day or not transfer.unsettled:
                continue
            amount = late_interest(transfer.amount, self.seed.fed_upper_bound)
            transfer.interests.append(InterestEntry(str(uuid.uuid4()), day, amount, self.now))
            transfer.updated_at = self.now
            self.touched()
            self.emit.activity(
                self.now,
                self.books.account(transfer.source_account_no),
                "INT",
                status="executed",
                net_amount=ZERO,
                qty=amount,
                settle_date=day,
                system_date=day,
                description=f"type: instant_funding_late_interest, transfer_id: {transfer.id}",
                details={"transfer_id": transfer.id, "interest": wire(amount)},
            )

    @bulk()
    def _cancel_unsettled(self, day: date) -> None:
        """8 PM ET on the deadline: cancel what is still unsettled; reset the JIT daily usage."""
        for transfer in list(self.transfers.values()):
            if transfer.deadline == day and transfer.unsettled:
                self._cancel(transfer, "not settled by 8 PM ET on the deadline")
        self.jit.reset_daily()
        self.journals.end_of_day()

    def _margin_calls(self, day: date) -> None:
        """T+2: every customer still in debit gets a margin call; a cured one is cleared."""
        for account in self.books.by_no.values():
            if account.is_firm:
                continue
            if account.cash < 0 and account.margin_call_on is None:
                account.margin_call_on = day
            elif account.cash >= 0:
                account.margin_call_on = None

    def _liquidations(self, day: date) -> None:
        """T+3: positions of accounts called on an earlier day and still in debit are sold."""
        for account in self.books.by_no.values():
            if account.margin_call_on is not None and account.margin_call_on < day and account.cash < 0:
                self.jit.liquidate(account)
                account.liquidated_on = day
                if account.cash >= 0:
                    account.margin_call_on = None

    # ------------------------------------------------------------------ settlements

    @bulk()
    def create_settlement(self, transfers: list[dict[str, object]], additional_info: str | None) -> Settlement:
        if not transfers:
            raise SandboxError(422, "transfers must not be empty", suffix=10)
        if len(transfers) > MAX_TRANSFERS_PER_SETTLEMENT:
            raise SandboxError(
                422,
                f"a settlement may include at most {MAX_TRANSFERS_PER_SETTLEMENT} transfers, got {len(transfers)}",
                suffix=11,
            )
        ids: list[str] = []
        for item in transfers:
            transfer_id = str(item.get("instant_transfer_id", ""))
            transfer = self.transfer(transfer_id)
            if not transfer.unsettled:
                raise SandboxError(422, f"transfer {transfer_id} is {transfer.status} and cannot be settled")
            if transfer.settlement_id is not None:
                raise SandboxError(422, f"transfer {transfer_id} is already in settlement {transfer.settlement_id}")
            if self.seed.financial_institution:
                info = item.get("transmitter_info")
                missing = [
                    name
                    for name in REQUIRED_TRANSMITTER_FIELDS
                    if not isinstance(info, dict) or not str(info.get(name) or "").strip()
                ]
                if missing:
                    raise SandboxError(
                        422,
                        f"transfer {transfer_id}: transmitter_info requires {', '.join(missing)}",
                        suffix=12,
                    )
            ids.append(transfer_id)
        if len(set(ids)) != len(ids):
            raise SandboxError(422, "a transfer id appears more than once", suffix=13)
        sources = {self.transfers[i].source_account_no for i in ids}
        if len(sources) != 1:
            raise SandboxError(422, "all transfers of a settlement must share one source account", suffix=14)
        source = sources.pop()
        busy = [s for s in self.settlements.values() if s.status.in_progress]  # one per correspondent, any source
        if busy:
            raise SandboxError(
                422,
                f"settlement {busy[0].id} (source account {busy[0].source_account_no}) is already in progress; "
                "only one settlement can be in progress at a time",
                suffix=15,
            )
        chosen = [self.transfers[i] for i in ids]
        settlement = Settlement(
            id=str(uuid.uuid4()),
            source_account_no=source,
            transfer_ids=ids,
            status=SettlementStatus.PENDING,
            total_amount=sum((t.amount for t in chosen), ZERO),
            interest_amount=sum((t.total_interest for t in chosen), ZERO),
            interest_at_creation={t.id: t.total_interest for t in chosen},
            additional_info=additional_info,
            created_at=self.now,
            updated_at=self.now,
        )
        self.settlements[settlement.id] = settlement
        for transfer in chosen:
            transfer.settlement_id = settlement.id
        self.touched()
        self.schedule(
            self.now + timedelta(seconds=self.seed.settlement_delay_seconds),
            lambda: self._process_settlement(settlement),
        )
        return settlement

    def _process_settlement(self, settlement: Settlement) -> None:
        if not settlement.status.in_progress:
            return
        transfers = [self.transfers[i] for i in settlement.transfer_ids]
        for transfer in transfers:
            if transfer.total_interest != settlement.interest_at_creation[transfer.id]:
                self._fail(settlement, f"transfer {transfer.id} accrued interest after the settlement was created")
                return
            if not transfer.unsettled:
                self._fail(settlement, f"transfer {transfer.id} is {transfer.status}")
                return
        source = self.books.account(settlement.source_account_no)
        if source.cash < settlement.required:
            if settlement.status is SettlementStatus.PENDING:
                settlement.status = SettlementStatus.AWAITING_ADDITIONAL_FUNDS
                settlement.awaiting_since = self.now
                settlement.updated_at = self.now
                self.schedule(
                    self.now + timedelta(seconds=self.seed.awaiting_funds_timeout_seconds),
                    lambda: self._expire_awaiting(settlement),
                )
            return
        self._complete(settlement, source, transfers)

    def retry_awaiting(self) -> None:
        """Funds arrived somewhere: re-run every settlement waiting for additional funds."""
        for settlement in list(self.settlements.values()):
            if settlement.status is SettlementStatus.AWAITING_ADDITIONAL_FUNDS:
                self._process_settlement(settlement)

    def _expire_awaiting(self, settlement: Settlement) -> None:
        if settlement.status is not SettlementStatus.AWAITING_ADDITIONAL_FUNDS:
            return
        self._process_settlement(settlement)
        if settlement.status is SettlementStatus.AWAITING_ADDITIONAL_FUNDS:
            available = self.books.account(settlement.source_account_no).cash
            self._fail(
                settlement,
                f"insufficient balance, available: {max(available, ZERO).normalize():f}, "
                f"required: {settlement.required.normalize():f}",
            )

    def _fail(self, settlement: Settlement, reason: str) -> None:
        settlement.status = SettlementStatus.FAILED
        settlement.reason = reason
        settlement.updated_at = self.now
        for transfer_id in settlement.transfer_ids:
            transfer = self.transfers[transfer_id]
            if transfer.settlement_id == settlement.id:
                transfer.settlement_id = None
        self.touched()

    @bulk()
    def _complete(self, settlement: Settlement, source: Account, transfers: list[Transfer]) -> None:
        """Debit SI, turn each memopost into settled cash (MEM canceled + CSD), sweep SI excess to FW."""
        self.books.post(self.now, source, "cash", -settlement.required, "settlement", settlement.id, "Alpaca")
        settle_date = self.settle_date()
        for transfer in transfers:
            self._execute(transfer)  # a transfer settled before it executed still credits the customer
            account = self.books.account(transfer.account_no)
            if transfer.executed:
                self.books.post(
                    self.now, account, "memoposts", -transfer.amount, "settled", transfer.id, IF_COUNTERPARTY
                )
            transfer.status = IFStatus.COMPLETED
            transfer.settlement_id = settlement.id
            transfer.updated_at = self.now
            self._use_limit(transfer, -1)
            self._mem_canceled(transfer, account, settle_date, MEMOPOST)
            self.emit.activity(
                self.now,
                account,
                "CSD",
                status="executed",
                net_amount=transfer.amount,
                settle_date=settle_date,
                system_date=transfer.system_date,
                description=DEPOSIT,
                details={"transfer_id": transfer.id, "settlement_id": settlement.id},
            )
        if source.cash > 0:
            fw = self.books.firm(AccountKind.FW)
            excess = source.cash
            self.books.post(self.now, source, "cash", -excess, "excess swept to FW", settlement.id, fw.number)
            self.books.post(self.now, fw, "cash", excess, "excess swept from SI", settlement.id, source.number)
        settlement.status = SettlementStatus.COMPLETED
        settlement.completed_at = self.now
        settlement.updated_at = self.now
        self.touched()

    # ------------------------------------------------------------------ admin money

    def wire_in(self, account_no: str, amount: Decimal, *, immediate: bool = False) -> datetime:
        """``POST /sandbox/wires``: an incoming bank wire, booked (a CSD activity) in the 08:00–08:30 ET window of
        a banking day, or at once when ``immediate``; returns when it is (or was) credited."""
        if amount <= 0 or not has_at_most_cents(amount):
            raise SandboxError(422, "amount must be a positive amount with at most 2 decimals")
        account = self.books.account(account_no)
        if immediate:
            self._credit_wire(account, amount)
            return self.now
        booked_at = self.banking.wire_booked_at(self.now)  # wires booked at one instant keep the order sent
        self.schedule(booked_at, lambda: self._credit_wire(account, amount))
        return booked_at

    def _credit_wire(self, account: Account, amount: Decimal) -> None:
        self.books.post(self.now, account, "cash", amount, "incoming wire", "wire", "external bank")
        self.emit.activity(
            self.now,
            account,
            "CSD",
            status="executed",
            net_amount=amount,
            settle_date=self.settle_date(),
            system_date=self.system_date,
            description="type: wire_deposit",
            details={},
        )
        self.retry_awaiting()
