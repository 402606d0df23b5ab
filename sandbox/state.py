"""The sandbox's records: its seed configuration, accounts, transfers, settlements, journals."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from funding.models import IFStatus, JournalStatus, SettlementStatus
from funding.money import CENT, ZERO, parse_money

SandboxAmount = Annotated[Decimal, BeforeValidator(parse_money)]


class SandboxError(Exception):
    """A refusal the sandbox answers with ``{"code": status*100000+n, "message": ...}``."""

    def __init__(self, status: int, message: str, *, suffix: int = 0) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = status * 100000 + suffix


class IdempotencyStore:
    """Idempotency-Key → (request fingerprint, resource id), as docs/broker-api.md "Journals" describes."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[str, str]] = {}

    def lookup(self, key: str | None, fingerprint: str) -> str | None:
        """The id created earlier under ``key``; 422 when the body differs; None when new."""
        if key is None or key not in self._seen:
            return None
        seen_fingerprint, resource_id = self._seen[key]
        if seen_fingerprint != fingerprint:
            raise SandboxError(422, f"Idempotency-Key {key!r} was used with a different request body", suffix=1)
        return resource_id

    def remember(self, key: str | None, fingerprint: str, resource_id: str) -> None:
        if key is not None:
            self._seen[key] = (fingerprint, resource_id)


class SeedConfig(BaseModel):
    """The body of ``POST /sandbox/reset``; every field has the default the demo and tests start from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    correspondent: str = "SKPR"
    firm_prefix: str = "7536050"
    customers: int = Field(default=10, ge=0, le=200_000)
    customer_cash: SandboxAmount = Decimal("0")
    rf_balance: SandboxAmount = Decimal("250000")
    si_balance: SandboxAmount = Decimal("0")
    fw_balance: SandboxAmount = Decimal("0")
    si_accounts: int = Field(default=1, ge=1, le=9)
    """SI accounts of the correspondent: ``<prefix>SI``, then ``<prefix>SI2``, … (the others open empty)."""
    dp_balance: SandboxAmount = Decimal("100000")
    if_correspondent_limit: SandboxAmount = Decimal("100000")
    if_account_limit: SandboxAmount | None = Decimal("1000")
    """None means a partner-level limit only (IF FAQ)."""
    fed_upper_bound: SandboxAmount = Decimal("0.0450")
    """Annual fed funds upper bound used for late interest (plus 8 %)."""
    if_execute_delay_seconds: float = Field(default=1.0, ge=0)
    settlement_delay_seconds: float = Field(default=30.0, ge=0)
    awaiting_funds_timeout_seconds: float = Field(default=900.0, ge=0)
    jnlc_transaction_limit: SandboxAmount = Decimal("50")
    jnlc_daily_limit: SandboxAmount = Decimal("1000")
    jnlc_limits_apply_to_firm: bool = False
    financial_institution: bool = False
    """When true, settlements require transmitter_info (full name, country, bank account, bank name)."""
    jit_daily_net_limit: SandboxAmount = Decimal("1000000")
    rate_limit_per_minute: int = Field(default=1000, ge=1)
    rate_limit_enforced: bool = False
    now: datetime | None = None
    """Set the sandbox clock to this instant on reset (and freeze it when ``freeze`` is true)."""
    freeze: bool = False


class AccountKind(StrEnum):
    CUSTOMER = "customer"
    SI = "SI"
    RF = "RF"
    FW = "FW"
    DP = "DP"


@dataclass
class Position:
    symbol: str
    qty: Decimal
    price: Decimal


@dataclass
class Account:
    id: str
    number: str
    kind: AccountKind
    given_name: str
    family_name: str
    email: str
    created_at: datetime
    cash: Decimal = ZERO
    memoposts: Decimal = ZERO
    positions: dict[str, Position] = field(default_factory=dict)
    margin_call_on: date | None = None
    liquidated_on: date | None = None

    @property
    def is_firm(self) -> bool:
        return self.kind is not AccountKind.CUSTOMER

    @property
    def long_market_value(self) -> Decimal:
        return sum((p.qty * p.price for p in self.positions.values()), ZERO)

    @property
    def transferable(self) -> Decimal:
        """Cash that may leave the account: settled cash, never memoposted buying power."""
        return max(self.cash - self.memoposts, ZERO)


@dataclass(slots=True)
class LedgerEntry:
    """One balance change; its sequence number is its place in the ledger (from 1)."""

    at: datetime
    account_no: str
    balance: str
    """``cash`` or ``memoposts``."""
    delta: Decimal
    after_cents: int
    """The balance after it, in cents (an int takes a third of a Decimal's memory; a million transfers write six
    million entries)."""
    reason: str
    ref: str
    counterparty: str

    @property
    def after(self) -> Decimal:
        return self.after_cents * CENT


@dataclass
class InterestEntry:
    id: str
    day: date
    amount: Decimal
    created_at: datetime


@dataclass
class Transfer:
    id: str
    account_no: str
    source_account_no: str
    amount: Decimal
    status: IFStatus
    system_date: date
    deadline: date
    created_at: datetime
    executed: bool = False
    """True once the memopost was booked (buying power live)."""
    interests: list[InterestEntry] = field(default_factory=list)
    settlement_id: str | None = None
    updated_at: datetime | None = None
    mem_activity_id: str | None = None

    @property
    def total_interest(self) -> Decimal:
        return sum((i.amount for i in self.interests), ZERO) if self.interests else ZERO

    @property
    def remaining_payable(self) -> Decimal:
        if self.status is IFStatus.COMPLETED:
            return ZERO
        return self.amount + self.total_interest

    @property
    def unsettled(self) -> bool:
        return self.status in (IFStatus.PENDING, IFStatus.EXECUTED)


@dataclass
class Settlement:
    id: str
    source_account_no: str
    transfer_ids: list[str]
    status: SettlementStatus
    total_amount: Decimal
    interest_amount: Decimal
    interest_at_creation: dict[str, Decimal]
    additional_info: str | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None = None
    reason: str | None = None
    awaiting_since: datetime | None = None

    @property
    def required(self) -> Decimal:
        """What SI must hold for the settlement to complete: amounts plus interest booked."""
        return self.total_amount + self.interest_amount


@dataclass
class Journal:
    id: str
    entry_type: str
    from_account: str
    to_account: str
    amount: Decimal
    status: JournalStatus
    description: str
    created_at: datetime
    system_date: date
    transmitter: dict[str, Any] = field(default_factory=dict)
    settle_date: date | None = None
    idempotency_key: str | None = None
    batch: bool = False
    error_message: str | None = None
    fixture: str | None = None
    """``pending`` or ``rejected`` from a ``/fixtures/status=.../fixtures/`` description."""


@dataclass
class JitTrade:
    """One executed customer trade as the JIT detail report lists it."""

    trns_id: str
    external_id: str
    summary_category: str
    account_id: str
    account_no: str
    symbol: str
    system_date: date
    trade_date: date
    trade_time: str
    settle_date: date
    side: str
    qty: Decimal
    price: Decimal
    gross_amt: Decimal
    commission: Decimal
    net_amt: Decimal
    description: str
    order_id: str
    client_order_id: str
