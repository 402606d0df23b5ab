"""Reading what Redis answers: one way to turn its bytes into text, for every adapter and process."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def text(value: object) -> str:
    """A Redis reply as text (redis-py returns bytes unless a client decodes; RQ's connections never do)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def texts(values: Iterable[Any]) -> set[str]:
    """A set reply (``SMEMBERS``) as text."""
    return {text(value) for value in values}


def text_map(raw: Mapping[Any, Any]) -> dict[str, str]:
    """A hash reply (``HGETALL``) as text."""
    return {text(k): text(v) for k, v in raw.items()}
