"""The transfers due on one deadline as the settle path reads them, held in columns.

A settle run needs, of each transfer due, its id, account, amount, remaining payable, interest and creation
time; a validated :class:`~funding.models.InstantFunding` holds them in about 1 KB. :class:`Dues` keeps them,
each given as a :class:`Listed`, in arrays (the id as its 16 bytes, cents as integers, the account as an index
into the day's accounts): about 60 bytes a transfer, so a million due on one day take some 60 MB, not a
gigabyte. It is a read-only sequence of :class:`Due` records made on access; a slice is a view, and only a
settlement-sized batch is ever turned into records at once.

Amounts are exact: one that is not a whole number of cents (none is on Alpaca's wire) is kept as its Decimal
beside the columns.
"""

from __future__ import annotations

import functools
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import NamedTuple, overload

from funding.models import InstantFunding
from funding.money import CENT, ZERO


@dataclass(frozen=True, slots=True)
class Due:
    """One transfer due: what a plan, a settlement's body and the cost figures read of it."""

    id: str
    account_no: str
    amount: Decimal
    remaining_payable: Decimal
    total_interest: Decimal
    created_at: datetime


class Listed(NamedTuple):
    """One transfer of the day's listing as :meth:`Dues.add` takes it: what the Broker adapter checked of a row
    (field by field, or through the model: :meth:`of`)."""

    id: str
    """Canonical (lower-case, hyphenated) UUID text."""
    account_no: str
    source_account_no: str
    amount: Decimal
    remaining_payable: Decimal
    total_interest: Decimal
    created_at: datetime

    @classmethod
    def of(cls, transfer: InstantFunding) -> Listed:
        return cls(
            str(transfer.id),
            transfer.account_no,
            transfer.source_account_no,
            transfer.amount,
            transfer.remaining_payable,
            transfer.total_interest,
            transfer.created_at,
        )


_COLUMNS = ("amount", "remaining_payable", "total_interest")


@functools.lru_cache(maxsize=4096)
def _whole_cents(value: Decimal) -> int | None:
    """``value`` in cents, or None when it is not a whole number of them (a listing repeats a few amounts)."""
    cents = value * 100
    return int(cents) if cents == cents.to_integral_value() else None


class _Positions(Sequence[Due]):
    """Transfers of a :class:`Dues` by position: indexing makes one record, a slice is a view (no copy)."""

    _dues: Dues

    def _positions(self) -> range:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self._positions())

    @overload
    def __getitem__(self, index: int) -> Due: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Due]: ...

    def __getitem__(self, index: int | slice) -> Due | Sequence[Due]:
        if isinstance(index, slice):
            return _View(self._dues, self._positions()[index])
        return self._dues.record(self._positions()[index])  # IndexError past the end, as a list's

    def __iter__(self) -> Iterator[Due]:
        for n in self._positions():
            yield self._dues.record(n)


class Dues(_Positions):
    """Transfers due, in the order they were added; :meth:`add` one :class:`InstantFunding` at a time."""

    def __init__(self) -> None:
        self._dues = self
        self._ids = bytearray()
        self._accounts: list[str] = []
        self._account_index: dict[str, int] = {}
        self._account = array("I")
        self._cents = {name: array("q") for name in _COLUMNS}
        self._created = array("d")
        self._inexact: dict[tuple[int, str], Decimal] = {}
        self.total = ZERO
        """The remaining payable of every transfer added."""

    def add(self, transfer: Listed) -> None:
        n = len(self._account)
        self._ids += bytes.fromhex(transfer.id.replace("-", ""))
        index = self._account_index.get(transfer.account_no)
        if index is None:
            index = self._account_index[transfer.account_no] = len(self._accounts)
            self._accounts.append(transfer.account_no)
        self._account.append(index)
        amounts = (transfer.amount, transfer.remaining_payable, transfer.total_interest)
        for name, value in zip(_COLUMNS, amounts, strict=True):
            cents = _whole_cents(value)
            if cents is None:
                self._inexact[(n, name)] = value
                cents = int(value * 100)
            self._cents[name].append(cents)
        self._created.append(transfer.created_at.timestamp())
        self.total += transfer.remaining_payable

    def _positions(self) -> range:
        return range(len(self._account))

    def record(self, n: int) -> Due:
        """The ``n``-th transfer added (0-based) as a record."""
        h = self._ids[16 * n : 16 * n + 16].hex()
        return Due(
            f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}",
            self._accounts[self._account[n]],
            self._amount(n, "amount"),
            self._amount(n, "remaining_payable"),
            self._amount(n, "total_interest"),
            datetime.fromtimestamp(self._created[n], UTC),
        )

    def _amount(self, n: int, name: str) -> Decimal:
        if self._inexact and (n, name) in self._inexact:
            return self._inexact[(n, name)]
        return self._cents[name][n] * CENT

    @property
    def accounts(self) -> list[str]:
        """The accounts of the transfers, each once."""
        return list(self._accounts)


class _View(_Positions):
    """Some of a :class:`Dues`' transfers, by position, without copying them."""

    def __init__(self, dues: Dues, positions: range) -> None:
        self._dues, self._range = dues, positions

    def _positions(self) -> range:
        return self._range
