"""Sandbox records → Alpaca's JSON shapes (field names, enum spellings, decimal strings)."""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from datetime import datetime
from typing import Any

from funding.calendar import ET, TradingSession, to_et
from funding.money import ZERO, wire
from sandbox.state import Account, AccountKind, Journal, Settlement, Transfer

UNSET = "0001-01-01T00:00:00Z"
"""Go's zero time: what a required date-time carries before it happens (an unreconciled interest)."""


def et_iso(moment: datetime) -> str:
    """An instant with its US/Eastern offset, as Alpaca's examples print ``created_at``."""
    return moment.astimezone(ET).isoformat()


def transfer(t: Transfer) -> dict[str, Any]:
    return {
        "id": t.id,
        "account_no": t.account_no,
        "source_account_no": t.source_account_no,
        "amount": wire(t.amount),
        "status": t.status.value,
        "system_date": t.system_date.isoformat(),
        "deadline": t.deadline.isoformat(),
        "created_at": et_iso(t.created_at),
        "remaining_payable": wire(t.remaining_payable),
        "total_interest": wire(t.total_interest),
        "interests": [
            {
                "id": i.id,
                "date": i.day.isoformat(),
                "amount": wire(i.amount),
                "status": "COMPLETED" if t.status.value == "COMPLETED" else "EXECUTED",
                "created_at": et_iso(i.created_at),
                "reconciled_at": et_iso(t.updated_at) if t.status.value == "COMPLETED" and t.updated_at else UNSET,
            }
            for i in t.interests
        ],
        "fees": [],
    }


def settlement(s: Settlement) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": s.id,
        "status": s.status.value,
        "total_amount": wire(s.total_amount),
        "interest_amount": wire(s.interest_amount),
        "source_account_number": s.source_account_no,
        "created_at": et_iso(s.created_at),
        "updated_at": et_iso(s.updated_at),
    }
    if s.additional_info is not None:
        body["additional_info"] = s.additional_info
    if s.reason is not None:
        body["reason"] = s.reason
    if s.completed_at is not None:
        body["completed_at"] = et_iso(s.completed_at)
    return body


def journal(j: Journal, *, batch: bool = False) -> dict[str, Any]:
    """A Journal; in a batch answer every entry carries ``error_message`` ("" when it was booked)."""
    body: dict[str, Any] = {
        "id": j.id,
        "entry_type": j.entry_type,
        "from_account": j.from_account,
        "to_account": j.to_account,
        "symbol": None,
        "qty": None,
        "price": None,
        "status": j.status.value,
        "settle_date": j.settle_date.isoformat() if j.settle_date else None,
        "system_date": j.system_date.isoformat(),
        "net_amount": wire(j.amount),
        "description": j.description,
        "currency": "USD",
        "created_at": et_iso(j.created_at),
        **j.transmitter,
    }
    if batch or j.error_message is not None:
        body["error_message"] = j.error_message or ""
    return body


ENTITIES = frozenset(
    {"agreements", "contact", "disclosures", "documents", "identity", "trading_configurations", "trusted_contact"}
)
"""What ``GET /v1/accounts`` may be asked to include (``entities``); the sandbox renders contact and identity."""


def account(a: Account, entities: AbstractSet[str] = frozenset()) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": a.id,
        "account_number": a.number,
        "status": "ACTIVE",
        "crypto_status": "INACTIVE",
        "currency": "USD",
        "last_equity": wire(equity(a)),
        "created_at": et_iso(a.created_at),
        "account_type": "trading",
    }
    if "contact" in entities:
        body["contact"] = {
            "email_address": a.email,
            "phone_number": "+15555550100",
            "street_address": ["123 Alpaca Way"],
            "city": "San Mateo",
            "state": "CA",
            "postal_code": "94401",
        }
    if "identity" in entities:
        body["identity"] = {
            "given_name": a.given_name,
            "family_name": a.family_name,
            "date_of_birth": "1990-01-01",
            "tax_id_type": "USA_SSN",
            "country_of_citizenship": "USA",
            "country_of_tax_residence": "USA",
            "funding_source": ["employment_income"],
        }
    return body


def equity(a: Account) -> Any:
    """``cash + long_market_value + short_market_value - memoposts`` (IF FAQ)."""
    return a.cash + a.long_market_value - a.memoposts


def trade_account(a: Account, last_close: datetime) -> dict[str, Any]:
    """A TradeAccount; the ``last_*`` snapshot is the balance now (the sandbox keeps no end-of-day history)."""
    buying_power = wire(max(a.cash, ZERO))
    zero, value = wire(ZERO), wire(equity(a))
    return {
        "id": a.id,
        "account_number": a.number,
        "status": "ACTIVE",
        "crypto_status": "INACTIVE",
        "currency": "USD",
        "admin_configurations": {},
        "cash": wire(a.cash),
        "buying_power": buying_power,
        "regt_buying_power": buying_power,
        "daytrading_buying_power": zero,
        "effective_buying_power": buying_power,
        "non_marginable_buying_power": buying_power,
        "memoposts": wire(a.memoposts),
        "cash_withdrawable": wire(a.transferable),
        "cash_transferable": wire(a.transferable),
        "pending_transfer_out": zero,
        "pending_transfer_in": zero,
        "intraday_adjustments": zero,
        "accrued_fees": zero,
        "long_market_value": wire(a.long_market_value),
        "short_market_value": zero,
        "position_market_value": wire(a.long_market_value),
        "equity": value,
        "last_equity": value,
        "portfolio_value": value,
        "initial_margin": zero,
        "maintenance_margin": zero,
        "sma": zero,
        "multiplier": "1",
        "daytrade_count": 0,
        "trading_blocked": False,
        "transfers_blocked": False,
        "account_blocked": False,
        "trade_suspended_by_user": False,
        "shorting_enabled": False,
        "pattern_day_trader": False,
        "created_at": et_iso(a.created_at),
        "balance_asof": to_et(last_close).date().isoformat(),
        "previous_close": et_iso(last_close),
        "last_cash": wire(a.cash),
        "last_buying_power": buying_power,
        "last_regt_buying_power": buying_power,
        "last_daytrading_buying_power": zero,
        "last_daytrade_count": 0,
        "last_long_market_value": wire(a.long_market_value),
        "last_short_market_value": zero,
        "last_initial_margin": zero,
        "last_maintenance_margin": zero,
        "clearing_broker": "VELOX",
    }


def sandbox_account(a: Account) -> dict[str, Any]:
    """The admin view: balances plus the margin-call and liquidation state the API does not show."""
    return {
        "id": a.id,
        "account_number": a.number,
        "kind": a.kind.value,
        "cash": wire(a.cash),
        "memoposts": wire(a.memoposts),
        "positions": [{"symbol": p.symbol, "qty": str(p.qty), "price": wire(p.price)} for p in a.positions.values()],
        "margin_call_on": a.margin_call_on.isoformat() if a.margin_call_on else None,
        "liquidated_on": a.liquidated_on.isoformat() if a.liquidated_on else None,
        "firm": a.kind is not AccountKind.CUSTOMER,
    }


def calendar_day(session: TradingSession) -> dict[str, str]:
    return {
        "date": session.day.isoformat(),
        "open": session.open.strftime("%H:%M"),
        "close": session.close.strftime("%H:%M"),
        "session_open": session.session_open.strftime("%H%M"),
        "session_close": session.session_close.strftime("%H%M"),
        "settlement_date": session.settlement_date.isoformat(),
    }
