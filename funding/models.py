"""Wire models of the Broker API (docs/broker-api.md), tolerant of what Alpaca may add.

Unknown fields are kept (``extra="allow"``); an unknown enum value parses into a pseudo-member named
``UNKNOWN`` that keeps the raw value, so the caller can log and count it instead of crashing. Every instant must
carry its offset (``AwareDatetime``): a naive one would raise ``TypeError`` where it meets an aware one (the
planner orders transfers by ``created_at``, the listener's lag metric subtracts ``at`` from its clock).
Amounts are :class:`~decimal.Decimal`; a float amount is refused (parse JSON with
:func:`funding.money.loads_exact`, which turns JSON numbers into Decimals).
"""

from __future__ import annotations

import functools
import sys
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Self
from uuid import UUID

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

from funding import ids
from funding.errors import MalformedDataError
from funding.money import parse_money


class TolerantEnum(StrEnum):
    """A string enum that maps an unknown value to a pseudo-member named ``UNKNOWN``."""

    @classmethod
    def _missing_(cls, value: object) -> Self:
        member = str.__new__(cls, str(value))
        member._name_ = "UNKNOWN"
        member._value_ = str(value)
        return member

    @property
    def known(self) -> bool:
        """False for a value this version of settlekeeper has never heard of."""
        return self._name_ != "UNKNOWN"


class IFStatus(TolerantEnum):
    PENDING = "PENDING"
    EXECUTED = "EXECUTED"
    COMPLETED = "COMPLETED"
    CANCELED = "CANCELED"
    FAILED = "FAILED"

    @property
    def final(self) -> bool:
        """Settled, canceled or failed: nothing more will happen to the transfer."""
        return self in (IFStatus.COMPLETED, IFStatus.CANCELED, IFStatus.FAILED)


class SettlementStatus(TolerantEnum):
    PENDING = "PENDING"
    AWAITING_ADDITIONAL_FUNDS = "AWAITING_ADDITIONAL_FUNDS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"

    @property
    def in_progress(self) -> bool:
        return self in (SettlementStatus.PENDING, SettlementStatus.AWAITING_ADDITIONAL_FUNDS)


class JournalStatus(TolerantEnum):
    QUEUED = "queued"
    SENT_TO_CLEARING = "sent_to_clearing"
    PENDING = "pending"
    EXECUTED = "executed"
    ACTIVITY_CREATED = "activity_created"
    REJECTED = "rejected"
    CANCELED = "canceled"
    REFUSED = "refused"
    DELETED = "deleted"
    CORRECT = "correct"


class FeeType(TolerantEnum):
    PARTNER = "partner"
    ALPACA = "alpaca"


def _amount(value: object) -> Decimal:
    return amount_of_text(value) if type(value) is str else _parse_amount(value)


@functools.lru_cache(maxsize=4096)
def amount_of_text(text: str) -> Decimal:
    """Equal wire strings share one (immutable) Decimal: a listing of 100,000 transfers repeats amounts."""
    return _parse_amount(text)


def _parse_amount(value: object) -> Decimal:
    try:
        return parse_money(value)
    except MalformedDataError as exc:
        raise ValueError(str(exc)) from exc  # pydantic reports it as a ValidationError


Amount = Annotated[Decimal, BeforeValidator(_amount)]
"""A money amount: decimal string, integer or Decimal; never a float."""

_DAYS: dict[date, date] = {}


def shared_day(day: date) -> date:
    """One object per business date: the transfers of a listing name only a few."""
    return _DAYS.setdefault(day, day) if len(_DAYS) < 4096 else day


BusinessDate = Annotated[date, AfterValidator(shared_day)]


def _account_number(value: str) -> str:
    try:
        return sys.intern(ids.account_number(value))
    except MalformedDataError as exc:
        raise ValueError(str(exc)) from exc  # pydantic reports it as a ValidationError


AccountNumber = Annotated[str, AfterValidator(_account_number)]
"""An account number: letters and digits only (it becomes part of Redis keys and job ids), interned: a
customer's transfers share it."""
_FIELDS_GIVEN: dict[frozenset[str], set[str]] = {}
"""The sets of field names transfers were given, shared (see :meth:`InstantFunding.model_post_init`)."""


class WireModel(BaseModel):
    """Base of every wire model: frozen, keeps unknown fields."""

    model_config = ConfigDict(extra="allow", frozen=True)


def _unset_instant(value: Any) -> Any:
    """Go's zero time (``0001-01-01T00:00:00Z``), which a required date-time carries until it happens, is None."""
    return None if isinstance(value, str) and value.startswith("0001-01-01") else value


class Interest(WireModel):
    id: UUID
    date: date
    amount: Amount
    status: IFStatus
    created_at: AwareDatetime
    reconciled_at: Annotated[AwareDatetime | None, BeforeValidator(_unset_instant)] = None
    """Required by the document; Go's zero time until the interest is reconciled (read as None)."""


class IFFee(WireModel):
    id: UUID
    amount: Amount
    type: FeeType


class InstantFunding(WireModel):
    """``InstantFunding``: one instant-funding transfer."""

    id: UUID
    account_no: AccountNumber
    source_account_no: AccountNumber
    amount: Amount
    status: IFStatus
    system_date: BusinessDate
    deadline: BusinessDate
    created_at: AwareDatetime
    remaining_payable: Amount
    total_interest: Amount
    interests: list[Interest] = Field(default_factory=list)
    fees: list[IFFee] = Field(default_factory=list)

    def model_post_init(self, context: Any, /) -> None:
        """Transfers that gave the same fields share one set of their names (728 bytes each otherwise).

        With the shared values above, a transfer takes about 1 KB instead of 2 KB: the settle job holds
        every transfer due on a day (100,000 and more) at once. The set is never changed: the model is
        frozen, and ``model_copy`` copies it.
        """
        given = self.__pydantic_fields_set__
        if len(_FIELDS_GIVEN) < 64:  # bounded: unknown fields Alpaca may add count as given too
            object.__setattr__(self, "__pydantic_fields_set__", _FIELDS_GIVEN.setdefault(frozenset(given), given))


class Settlement(WireModel):
    """``SettlementResponse``."""

    id: UUID
    status: SettlementStatus
    total_amount: Amount
    interest_amount: Amount | None = None
    source_account_number: AccountNumber | None = None
    reason: str | None = None
    additional_info: str | None = None
    created_at: AwareDatetime
    updated_at: AwareDatetime
    completed_at: AwareDatetime | None = None


class Journal(WireModel):
    id: UUID
    entry_type: str
    from_account: UUID
    to_account: UUID
    net_amount: Amount | None = None
    status: JournalStatus
    description: str | None = None
    settle_date: date | None = None
    system_date: date | None = None
    currency: str | None = None
    created_at: AwareDatetime | None = None


class Account(WireModel):
    """The fields of ``GET /v1/accounts`` settlekeeper relies on."""

    id: UUID
    account_number: AccountNumber
    status: str
    identity: dict[str, Any] | None = None
    contact: dict[str, Any] | None = None
    created_at: AwareDatetime | None = None
    """How ``GET /v1/accounts`` pages (``created_after``); absent from some answers the tests model."""


class MarketDay(WireModel):
    date: date


class MarketCalendar(WireModel):
    """``GET /v2/calendar/{market}``: the days a market (``BMO``: US banks) is open."""

    calendar: list[MarketDay]


class Clock(WireModel):
    """``GET /v1/clock`` (the one field settlekeeper reads): aware, because the business clock is compared with
    aware instants everywhere (the calendar refuses a naive one)."""

    timestamp: AwareDatetime


class TradeAccount(WireModel):
    """``GET /v1/trading/accounts/{id}/account`` (the money fields)."""

    id: UUID
    account_number: AccountNumber
    cash: Amount
    buying_power: Amount
    memoposts: Amount = Decimal(0)
    equity: Amount
    cash_withdrawable: Amount
    cash_transferable: Amount


class CorrespondentLimit(WireModel):
    amount_available: Amount
    amount_in_use: Amount
    amount_limit: Amount


class AccountLimit(CorrespondentLimit):
    account_no: AccountNumber


class IFReport(WireModel):
    """One row of ``GET /v1/instant_funding/reports``."""

    system_date: date
    account_no: AccountNumber
    total_amount_owed: Amount
    total_interest_penalty: Amount
    deadline: date
    instant_funding_transfers: list[InstantFunding] | None = None


class JITLimits(WireModel):
    correspondent: str | None = None
    daily_net_limit: Amount
    in_use_limit: Amount
    executed_buys: Amount | None = None
    executed_sells: Amount | None = None
    open_buys: Amount | None = None
    open_sells: Amount | None = None
    cash_held: Amount | None = None


def _object_or_empty(value: Any) -> Any:
    return value if isinstance(value, dict) else {}


class ActivityEvent(WireModel):
    """``ActivityEventV2`` from ``/v2beta1/events/activities``."""

    event_id: str
    account_id: UUID
    at: AwareDatetime
    activity_type: str
    status: str
    net_amount: Amount | None = None
    details: Annotated[dict[str, Any], BeforeValidator(_object_or_empty)] = Field(default_factory=dict)
    """What the document defines per activity type; another shape (a list, a string) is read as nothing."""
    description: str | None = None


class JournalStatusEvent(WireModel):
    """``JournalStatusEventV2`` from ``/v2/events/journals/status``."""

    event_id: str
    at: AwareDatetime
    entry_type: str
    journal_id: UUID
    status_from: str | None = None
    """``null``, ``""`` or missing on a journal's first event."""
    status_to: JournalStatus
    idempotency_key: str | None = None
    """The key the journal was created with: how an event finds its intent before the journal id is known."""


class NTAEvent(WireModel):
    """``NonTradeActivityEvent`` from ``/v1/events/nta`` (``net_amount`` is a JSON number)."""

    event_ulid: str
    account_id: UUID
    at: AwareDatetime
    entry_type: str
    net_amount: Amount
    description: str | None = None
    """Required by the document, but Alpaca's own example sends ``null``."""
    system_date: date
    status: str | None = None
