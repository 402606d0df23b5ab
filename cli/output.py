"""How the on-call commands speak: a readable table on a terminal (80 columns, colour only on a TTY), exact
JSON with ``--json``, and one exit status convention: 0 fine, 1 a problem found, 2 usage or configuration."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, TextIO

OK, PROBLEM, USAGE = 0, 1, 2
WIDTH = 80
_COLOURS = {"red": "31", "yellow": "33", "green": "32", "bold": "1", "dim": "2"}


def to_json(value: Any) -> str:
    """Exact machine output: Decimals as their decimal strings, dates as ISO text."""

    def encode(item: Any) -> Any:
        if isinstance(item, Decimal):
            return str(item)
        if hasattr(item, "isoformat"):
            return item.isoformat()
        raise TypeError(f"not JSON: {type(item).__name__}")

    return json.dumps(value, default=encode, indent=2, sort_keys=False)


@dataclass
class Out:
    """Where a command writes: its stream, whether it may colour, whether it speaks JSON."""

    json: bool = False
    stream: TextIO = field(default_factory=lambda: sys.stdout)

    @property
    def colour(self) -> bool:
        return not self.json and self.stream.isatty()

    def paint(self, text: str, colour: str) -> str:
        return f"\033[{_COLOURS[colour]}m{text}\033[0m" if self.colour else text

    def line(self, text: str = "", colour: str | None = None) -> None:
        self.stream.write((self.paint(text, colour) if colour else text) + "\n")

    def table(self, headers: Sequence[str], rows: Iterable[Sequence[object]], indent: int = 2) -> None:
        """Columns padded to their widest cell, the last one cut to fit 80 columns; nothing when no rows."""
        cells = [[str(c) for c in headers], *[[_cell(c) for c in row] for row in rows]]
        if len(cells) == 1:
            return
        widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
        for n, row in enumerate(cells):
            text = " " * indent + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            if len(text) > WIDTH:
                text = text[: WIDTH - 1] + "…"
            self.line(text, "bold" if n == 0 else None)

    def data(self, value: Any) -> None:
        self.stream.write(to_json(value) + "\n")


def positive(text: str) -> float:
    """An argparse type: a number greater than 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def minutes(value: int) -> str:
    """``20m``, ``7h20m``, ``1d4h`` ahead; ``12m ago`` behind."""
    span = abs(value)
    if span >= 24 * 60:
        text = f"{span // 1440}d{span % 1440 // 60}h"
    elif span >= 60:
        text = f"{span // 60}h{span % 60:02d}m"
    else:
        text = f"{span}m"
    return text if value >= 0 else f"{text} ago"


def age(iso: str, now: datetime) -> str:
    """How long ago an ISO instant was (``5m ago``), or the text itself when it is not one."""
    try:
        then = datetime.fromisoformat(iso)
    except ValueError:
        return iso or "-"
    elapsed = round((now - then).total_seconds() / 60)
    return minutes(-elapsed) if elapsed >= 1 else "just now"
