"""Customer trades, liquidation, and the JIT securities reports, limits and ledgers built from them."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import date, time
from decimal import Decimal
from typing import Any

from funding.calendar import at_et, to_et
from funding.money import ZERO, quantize, wire
from sandbox.ground import Ground
from sandbox.state import Account, AccountKind, JitTrade, Position, SandboxError

DETAIL_COLUMNS = (
    "trns_id",
    "external_id",
    "summary_categrory",  # sic: the column is spelled this way in Alpaca's JIT documentation
    "account_id",
    "account_no",
    "symbol",
    "system_date",
    "trade_date",
    "trade_time",
    "settle_date",
    "entry_type",
    "side",
    "qty",
    "price",
    "gross_amt",
    "commission",
    "net_amt",
    "description",
    "status",
    "order_id",
    "client_order_id",
)
NET_SUMMARY_COLUMNS = ("t0", "t1", "t2")
REPORTS_READY_AT = time(23, 30)
"""JIT reports become available after 11:30 PM ET on the trade date (seed 001)."""
LEDGERS = (
    ("2896b9e2-3198-44cd-a08e-4cc4079aee33", "Securities JIT IN", "JITIN0000"),
    ("7f88e5a2-8662-449c-8bd0-07cf5bc7632e", "Just In Time Out Wash - JITS", "JTOWJITS0"),
    ("8090a021-33ea-4b9d-8586-c91df416d952", "Just In Time Receivables - JITS", "JTRJITS00"),
    ("92b2095b-6370-483e-b6e9-5483bcc0fc1c", "Securities JIT JT", "JITJT0000"),
)
RECEIVABLES_LEDGER = LEDGERS[2][0]


class JitDesk:
    def __init__(self, ground: Ground) -> None:
        self.ground = ground
        self.trades: list[JitTrade] = []
        self.executed_buys = ZERO
        self.executed_sells = ZERO
        self.created_at = ground.now

    @property
    def in_use(self) -> Decimal:
        """``executed_buys − executed_sells + open_buys − open_sells`` (no open orders here)."""
        return self.executed_buys - self.executed_sells

    def trade(
        self,
        account: Account,
        symbol: str,
        side: str,
        qty: Decimal,
        price: Decimal,
        commission: Decimal = ZERO,
        description: str = "",
    ) -> JitTrade:
        """Execute a customer order at ``price``; a buy spends buying power (cash, memoposts included)."""
        ground = self.ground
        if account.kind is not AccountKind.CUSTOMER:
            raise SandboxError(422, "only customer accounts trade")
        if side not in ("buy", "sell") or qty <= 0 or price <= 0 or commission < 0:
            raise SandboxError(422, "side must be buy or sell, qty and price positive")
        gross = quantize(qty * price)
        if side == "buy":
            cost = gross + commission
            if cost > max(account.cash, ZERO):
                raise SandboxError(
                    403,
                    f"insufficient buying power: {wire(max(account.cash, ZERO))}, order costs {wire(cost)}",
                )
            if self.in_use + cost > ground.seed.jit_daily_net_limit:
                raise SandboxError(
                    403, "JIT daily net limit reached: buying is halted until the limit resets at 8 PM ET"
                )
            held = account.positions.get(symbol)
            new_qty = qty + (held.qty if held else ZERO)
            account.positions[symbol] = Position(symbol, new_qty, price)
            ground.books.post(ground.now, account, "cash", -cost, f"buy {qty} {symbol}", symbol, "market")
            self.executed_buys += cost
            net = -cost
            category = "in_t1"
        else:
            held = account.positions.get(symbol)
            if held is None or held.qty < qty:
                raise SandboxError(403, f"account {account.number} does not hold {qty} {symbol}")
            held.qty -= qty
            held.price = price
            if held.qty == 0:
                del account.positions[symbol]
            proceeds = gross - commission
            ground.books.post(ground.now, account, "cash", proceeds, f"sell {qty} {symbol}", symbol, "market")
            self.executed_sells += proceeds
            net = proceeds
            category = "out_t1"
        local = to_et(ground.now)
        system_date = ground.system_date
        row = JitTrade(
            trns_id=str(uuid.uuid4()),
            external_id=str(uuid.uuid4()),
            summary_category=category,
            account_id=account.id,
            account_no=account.number,
            symbol=symbol,
            system_date=system_date,
            trade_date=system_date,
            trade_time=local.strftime("%H:%M:%S"),
            settle_date=ground.calendar.next_trading_day(system_date),
            side=side,
            qty=qty,
            price=price,
            gross_amt=gross,
            commission=commission,
            net_amt=net,
            description=description or f"{side} {qty} {symbol} @ {price}",
            order_id=str(uuid.uuid4()),
            client_order_id=str(uuid.uuid4()),
        )
        self.trades.append(row)
        ground.emit.activity(
            ground.now,
            account,
            "TRD",
            status="executed",
            net_amount=net,
            qty=qty,
            price=price,
            symbol=symbol,
            settle_date=row.settle_date,
            system_date=system_date,
            description=row.description,
            details={"order_id": row.order_id, "side": side},
        )
        return row

    def liquidate(self, account: Account) -> None:
        """T+3: sell positions (largest first) until the debit balance is covered."""
        for position in sorted(account.positions.values(), key=lambda p: p.qty * p.price, reverse=True):
            if account.cash >= 0:
                return
            self.trade(
                account,
                position.symbol,
                "sell",
                position.qty,
                position.price,
                description=f"liquidation of {position.symbol} to cover a debit balance",
            )

    def reset_daily(self) -> None:
        self.executed_buys = ZERO
        self.executed_sells = ZERO

    def limits(self) -> dict[str, Any]:
        return {
            "correspondent": self.ground.seed.correspondent,
            "daily_net_limit": wire(self.ground.seed.jit_daily_net_limit),
            "in_use_limit": wire(self.in_use),
            "executed_buys": wire(self.executed_buys),
            "executed_sells": wire(self.executed_sells),
            "open_buys": wire(ZERO),
            "open_sells": wire(ZERO),
        }

    def report(self, report_type: str, system_date: date) -> str:
        """The CSV text of a ``detail`` or ``net_summary`` report, once it is available."""
        ready = at_et(system_date, REPORTS_READY_AT)
        if self.ground.now < ready:
            raise SandboxError(
                404,
                f"the {report_type} report for {system_date} is not available yet "
                f"(reports are generated after 11:30 PM ET on the trade date)",
            )
        rows = [t for t in self.trades if t.system_date == system_date]
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        if report_type == "detail":
            writer.writerow(DETAIL_COLUMNS)
            for t in rows:
                writer.writerow(
                    (
                        t.trns_id,
                        t.external_id,
                        t.summary_category,
                        t.account_id,
                        t.account_no,
                        t.symbol,
                        t.system_date,
                        t.trade_date,
                        t.trade_time,
                        t.settle_date,
                        "TRD",
                        t.side,
                        t.qty,
                        t.price,
                        wire(t.gross_amt),
                        wire(t.commission),
                        wire(t.net_amt),
                        t.description,
                        "executed",
                        t.order_id,
                        t.client_order_id,
                    )
                )
        elif report_type == "net_summary":
            buckets = {name: ZERO for name in NET_SUMMARY_COLUMNS}
            for t in rows:
                buckets[t.summary_category.split("_")[1]] += t.net_amt
            writer.writerow(NET_SUMMARY_COLUMNS)
            writer.writerow([wire(buckets[name]) for name in NET_SUMMARY_COLUMNS])
        else:
            raise SandboxError(422, f"report_type {report_type} is not available in the sandbox (PDF reports)")
        return buffer.getvalue()

    def ledgers(self) -> list[dict[str, str]]:
        """An array, as Alpaca's document gives it (the seed's sample was an object keyed by asset class)."""
        created = str(int(self.created_at.timestamp()))
        return [{"id": lid, "ledger_name": name, "status": "active", "created_at": created} for lid, name, _ in LEDGERS]

    def balances(self, ledger_id: str, start: date, end: date) -> dict[str, Any]:
        """The receivables ledger books each day's net due to Alpaca; the others stay empty."""
        try:
            lid, name, number = next(row for row in LEDGERS if row[0] == ledger_id)
        except StopIteration:
            raise SandboxError(404, f"ledger {ledger_id} not found") from None
        balance = ZERO
        starting = ZERO
        transactions = []
        if lid == RECEIVABLES_LEDGER:
            days = sorted({t.system_date for t in self.trades})
            for day in days:
                due = -sum((t.net_amt for t in self.trades if t.system_date == day), ZERO)
                balance += due
                if day < start:
                    starting = balance
                    continue
                if day > end:
                    break
                transactions.append(
                    {
                        "account_id": lid,
                        "account_no": number,
                        "account_name": name,
                        "system_date": day.isoformat(),
                        "entry_type": "JNLC",
                        "description": f"net JIT settlement for {day}",
                        "contra_account_name": "Securities JIT IN",
                        "amount": wire(due),
                        "balance": wire(balance),
                    }
                )
        ending = Decimal(transactions[-1]["balance"]) if transactions else starting
        return {
            "id": lid,
            "ledger_no": number,
            "ledger_name": name,
            "transactions": transactions,
            "starting_balance": wire(starting),  # decimal strings, as the document gives them (seed 001: numbers)
            "ending_balance": wire(ending),
            "activity_amount": str(len(transactions)),
        }
