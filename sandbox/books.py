"""Accounts and the ledger: the only place a sandbox balance changes."""

from __future__ import annotations

import functools
import uuid
from datetime import datetime, timedelta
from decimal import Decimal

from funding.money import ZERO, quantize
from sandbox.state import Account, AccountKind, LedgerEntry, SandboxError, SeedConfig

_FIRST_NAMES = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Niklaus")
_LAST_NAMES = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Perlman")


class Books:
    """Every account and every balance change, in order."""

    def __init__(self) -> None:
        self.by_id: dict[str, Account] = {}
        self.by_no: dict[str, Account] = {}
        self.ledger: list[LedgerEntry] = []
        self._in_order: list[Account] | None = None

    def seed(self, seed: SeedConfig, now: datetime) -> None:
        """Create the correspondent's firm accounts (docs/broker-api.md "Firm accounts") and ``seed.customers``
        customers."""
        opening = {
            AccountKind.SI: seed.si_balance,
            AccountKind.RF: seed.rf_balance,
            AccountKind.FW: seed.fw_balance,
            AccountKind.DP: seed.dp_balance,
        }
        # opened a millisecond apart up to ``now``, as accounts are: ``GET /v1/accounts`` pages by creation time
        count = len(opening) + seed.si_accounts - 1 + seed.customers
        opened = (now - timedelta(milliseconds=count - 1 - n) for n in range(count))
        for kind, balance in opening.items():
            account = self._open(f"{seed.firm_prefix}{kind.value}", kind, "Firm", kind.value, next(opened), seed)
            self.post(now, account, "cash", balance, "opening balance", "seed", "external")
        for n in range(2, seed.si_accounts + 1):
            self._open(f"{seed.firm_prefix}SI{n}", AccountKind.SI, "Firm", f"SI{n}", next(opened), seed)
        for n in range(seed.customers):
            given = _FIRST_NAMES[n % len(_FIRST_NAMES)]
            family = _LAST_NAMES[(n // len(_FIRST_NAMES)) % len(_LAST_NAMES)]
            account = self._open(f"81{n + 1:08d}", AccountKind.CUSTOMER, given, family, next(opened), seed)
            self.post(now, account, "cash", seed.customer_cash, "opening balance", "seed", "external")

    def _open(
        self, number: str, kind: AccountKind, given: str, family: str, now: datetime, seed: SeedConfig
    ) -> Account:
        account = Account(
            id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"settlekeeper-sandbox/{seed.correspondent}/{number}")),
            number=number,
            kind=kind,
            given_name=given,
            family_name=family,
            email=f"{number.lower()}@example.com",
            created_at=now,
        )
        self.by_id[account.id] = account
        self.by_no[account.number] = account
        self._in_order = None
        return account

    def in_creation_order(self) -> list[Account]:
        """Every account, oldest first (ties by number): sorted again only after an account is opened."""
        if self._in_order is None:
            self._in_order = sorted(self.by_no.values(), key=lambda a: (a.created_at, a.number))
        return self._in_order

    def account(self, number: str) -> Account:
        """The account with this number, or 404."""
        try:
            return self.by_no[number]
        except KeyError:
            raise SandboxError(404, f"account {number} not found") from None

    def account_by_id(self, account_id: str) -> Account:
        """The account with this UUID, or 404."""
        try:
            return self.by_id[account_id]
        except KeyError:
            raise SandboxError(404, f"account {account_id} not found") from None

    def firm(self, kind: AccountKind) -> Account:
        return next(a for a in self.by_no.values() if a.kind is kind)

    def firm_account_number(self, kind: str) -> str:
        return self.firm(AccountKind(kind)).number

    def post(
        self,
        at: datetime,
        account: Account,
        balance: str,
        delta: Decimal,
        reason: str,
        ref: str,
        counterparty: str,
    ) -> None:
        """Change ``account.<balance>`` by ``delta`` and record it; the ledger is append-only."""
        delta = _cents(delta)
        if delta == ZERO and reason != "opening balance":
            return
        if account.kind is AccountKind.DP and balance == "cash" and delta < 0:
            raise SandboxError(403, f"the DP account {account.number} can never be debited")
        after = quantize(getattr(account, balance) + delta)
        setattr(account, balance, after)
        self.ledger.append(LedgerEntry(at, account.number, balance, delta, int(after * 100), reason, ref, counterparty))


@functools.lru_cache(maxsize=4096)
def _cents(delta: Decimal) -> Decimal:
    """``delta`` to the cent, one shared object per value: the ledger of a million transfers repeats a few
    amounts (each Decimal is 104 bytes)."""
    return quantize(delta)
