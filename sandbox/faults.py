"""Fault injection (docs/sandbox.md "Faults"): what ``POST /sandbox/faults`` arms and the API and streams obey."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from sandbox.event_log import StreamName

FaultKind = Literal[
    "http_error",  # answer `status` (429 with X-RateLimit-Reset, 500/502/503) instead of handling
    "slow",  # wait `delay_seconds` (real time) before answering
    "drop_every",  # close the stream cleanly after every `n` events
    "dropped_comment",  # after `n` events skip `count` events and say "dropped `count` messages"
    "duplicate",  # send every `n`-th event twice
    "reorder",  # reverse runs of up to `window` consecutive events of the same account
    "truncate",  # after `n` events send half of the next event's line and cut the connection
    "internal_error",  # after `n` events send ": internal server error" and close (v2 streams only)
    "silence",  # send nothing at all, not even heartbeats, for `delay_seconds` (0: until the client leaves)
    "inject",  # before the `n`-th event of a connection, send `data: <data>` as given (malformed input); several
    # inject faults armed together are all sent; "\udcXX" in `data` sends the raw byte XX (invalid UTF-8)
    "jit_report",  # a JIT report (`report_type`, both when unset) is `mode`: missing, drop_row, alter_amount
]
STREAM_KINDS = frozenset(
    {"drop_every", "dropped_comment", "duplicate", "reorder", "truncate", "internal_error", "silence", "inject"}
)


class Fault(BaseModel):
    """One armed fault. ``times`` is how many requests or connections it affects (None: until cleared)."""

    model_config = ConfigDict(extra="forbid")

    kind: FaultKind
    stream: StreamName | None = None
    """Stream faults: only this stream (all when None)."""
    path: str | None = None
    """HTTP faults: only paths starting with this prefix (every non-admin path when None)."""
    method: Literal["GET", "POST", "DELETE"] | None = None
    """HTTP faults: only requests of this method (every method when None)."""
    n: int = Field(default=1, ge=1)
    count: int = Field(default=1, ge=1)
    status: int = Field(default=500, ge=400, le=599)
    reset_in_seconds: float | None = Field(default=None, ge=0)
    """``http_error``: ``X-RateLimit-Reset`` this many (real) seconds from now, instead of the minute window's."""
    delay_seconds: float = Field(default=0.0, ge=0)
    window: int = Field(default=2, ge=2)
    data: str = ""
    """``inject``: the raw text of the ``data:`` line."""
    pad_bytes: int = Field(default=0, ge=0, le=64 * 2**20)
    """``inject``: this many ``x`` appended to ``data`` (an over-long line without a huge request body)."""
    report_type: str | None = None
    """``jit_report``: only this report (``detail`` or ``net_summary``; both when None)."""
    mode: Literal["missing", "drop_row", "alter_amount"] = "missing"
    """``jit_report``: a 404 as before 11:30 PM, the last data row left out, or ``delta`` added to the first
    row's ``net_amt`` (detail) or ``t1`` (net summary)."""
    delta: Decimal = Decimal("1.00")
    times: int | None = Field(default=None, ge=1)


class FaultBoard:
    """The armed faults; each use decrements ``times`` and a spent fault disappears."""

    def __init__(self) -> None:
        self.faults: list[Fault] = []

    def arm(self, faults: list[Fault]) -> None:
        self.faults.extend(faults)

    def clear(self) -> None:
        self.faults.clear()

    def take_http(self, path: str, kind: str, method: str = "GET") -> Fault | None:
        """The first armed HTTP fault of ``kind`` matching ``method`` and ``path``, consumed once."""
        for fault in self.faults:
            if fault.kind != kind or fault.method not in (None, method):
                continue
            if fault.path is None and path.startswith("/sandbox"):
                continue
            if fault.path is not None and not path.startswith(fault.path):
                continue
            self._use(fault)
            return fault
        return None

    def take_jit_report(self, report_type: str) -> Fault | None:
        """The first armed ``jit_report`` fault for ``report_type``, consumed once."""
        for fault in self.faults:
            if fault.kind == "jit_report" and fault.report_type in (None, report_type):
                self._use(fault)
                return fault
        return None

    def take_stream(self, stream: StreamName) -> list[Fault]:
        """Every stream fault for a new connection to ``stream``, each consumed once."""
        taken = [
            fault
            for fault in self.faults
            if fault.kind in STREAM_KINDS and (fault.stream is None or fault.stream is stream)
        ]
        for fault in taken:
            self._use(fault)
        return taken

    def _use(self, fault: Fault) -> None:
        if fault.times is None:
            return
        fault.times -= 1
        if fault.times <= 0:
            self.faults.remove(fault)


def tamper_jit_report(text: str, fault: Fault) -> str:
    """The CSV ``text`` of a JIT report with ``fault``'s ``drop_row`` or ``alter_amount`` applied."""
    rows = list(csv.reader(io.StringIO(text)))
    header, data = rows[0], rows[1:]
    if fault.mode == "drop_row" and data:
        data = data[:-1]
    elif fault.mode == "alter_amount" and data:
        column = header.index("net_amt" if "net_amt" in header else "t1")
        data[0][column] = str(Decimal(data[0][column]) + fault.delta)
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows([header, *data])
    return buffer.getvalue()
