"""Sandbox records → Alpaca's JSON shapes (field names, enum spellings, decimal strings)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from funding.calendar import ET, TradingSession
from funding.money import ZERO, wire
from sandbox.state import Account, AccountKind, Journal, Settlement, Transfer


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
                "reconciled_at": et_iso(t.updated_at) if t.status.value == "COMPLETED" and t.updated_at else None,
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


def journal(j: Journal) -> dict[str, Any]:
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
    if j.error_message is not None:
        body["error_message"] = j.error_message
    return body


def account(a: Account, *, full: bool = False) -> dict[str, Any]:
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
    if full:
        body["contact"] = {
            "email_address": a.email,
            "phone_number": "+15555550100",
            "street_address": ["123 Alpaca Way"],
            "city": "San Mateo",
            "state": "CA",
            "postal_code": "94401",
        }
        body["identity"] = {
            "given_name": a.given_name,
            "family_name": a.family_name,
            "country_of_citizenship": "USA",
            "country_of_tax_residence": "USA",
        }
    return body


def equity(a: Account) -> Any:
    """``cash + long_market_value + short_market_value - memoposts`` (IF FAQ)."""
    return a.cash + a.long_market_value - a.memoposts


def trade_account(a: Account) -> dict[str, Any]:
    buying_power = max(a.cash, ZERO)
    return {
        "id": a.id,
        "account_number": a.number,
        "status": "ACTIVE",
        "crypto_status": "INACTIVE",
        "currency": "USD",
        "cash": wire(a.cash),
        "buying_power": wire(buying_power),
        "regt_buying_power": wire(buying_power),
        "daytrading_buying_power": wire(ZERO),
        "effective_buying_power": wire(buying_power),
        "non_marginable_buying_power": wire(buying_power),
        "memoposts": wire(a.memoposts),
        "cash_withdrawable": wire(a.transferable),
        "cash_transferable": wire(a.transferable),
        "pending_transfer_out": wire(ZERO),
        "pending_transfer_in": wire(ZERO),
        "intraday_adjustments": wire(ZERO),
        "accrued_fees": wire(ZERO),
        "long_market_value": wire(a.long_market_value),
        "short_market_value": wire(ZERO),
        "position_market_value": wire(a.long_market_value),
        "equity": wire(equity(a)),
        "last_equity": wire(equity(a)),
        "portfolio_value": wire(equity(a)),
        "initial_margin": wire(ZERO),
        "maintenance_margin": wire(ZERO),
        "multiplier": "1",
        "trading_blocked": False,
        "transfers_blocked": False,
        "account_blocked": False,
        "trade_suspended_by_user": False,
        "shorting_enabled": False,
        "created_at": et_iso(a.created_at),
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
