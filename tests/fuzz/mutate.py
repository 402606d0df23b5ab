"""Mutations of real-looking payloads: a field dropped, given a value of another kind, or given one known to be bad.

A mutation returns the new payload and what it did; a ``known_bad`` mutation is one after which the payload must
not be read as valid (the property the targets check: bad input yields a dead letter or an error, never a pass).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from tests.fuzz.wild import json_values

Path = tuple[str | int, ...]
Draw = Callable[[st.SearchStrategy[Any]], Any]


@dataclass(frozen=True)
class Mutation:
    """One change: ``kind`` (``drop``, ``wild``, ``bad``, ``extra``), where, and whether it makes the input bad."""

    kind: str
    path: Path
    known_bad: bool


def paths(value: Any, prefix: Path = ()) -> list[Path]:
    """Every path to a value inside ``value`` (object keys and list indexes), the root excluded."""
    found: list[Path] = []
    if isinstance(value, dict):
        for key, item in value.items():
            found.append((*prefix, key))
            found += paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.append((*prefix, index))
            found += paths(item, (*prefix, index))
    return found


def _parent(value: Any, path: Path) -> Any:
    for part in path[:-1]:
        value = value[part]
    return value


def mutate(
    draw: Draw,
    payload: Any,
    *,
    bad: Mapping[str, st.SearchStrategy[Any]],
    required: frozenset[str] = frozenset(),
    most: int = 3,
) -> tuple[Any, list[Mutation]]:
    """Apply up to ``most`` mutations to a copy of ``payload``.

    ``bad`` maps a top-level field to values known to be wrong for it; ``required`` are the top-level fields whose
    absence makes the payload bad.
    """
    payload = copy.deepcopy(payload)
    done: list[Mutation] = []
    for _ in range(draw(st.integers(min_value=0, max_value=most))):
        where = paths(payload)
        kind = draw(st.sampled_from(["bad", "bad", "drop", "wild", "extra"]))
        if kind == "bad" and isinstance(payload, dict) and bad:
            field = draw(st.sampled_from(sorted(bad)))
            payload[field] = draw(bad[field])
            done.append(Mutation("bad", (field,), True))
        elif kind == "extra" or not where:
            if isinstance(payload, dict):
                key = draw(st.text(max_size=12))
                if key not in payload:
                    payload[key] = draw(json_values())
                    done.append(Mutation("extra", (key,), False))
        else:
            path = draw(st.sampled_from(where))
            parent = _parent(payload, path)
            if kind == "drop" and isinstance(parent, dict):
                del parent[path[-1]]
                done.append(Mutation("drop", path, len(path) == 1 and path[0] in required))
            else:
                parent[path[-1]] = draw(json_values())
                done.append(Mutation("wild", path, False))
    return payload, done


def is_bad(mutations: list[Mutation], payload: Any, required: frozenset[str]) -> bool:
    """Whether the mutations left ``payload`` known to be bad: a required field gone, or a top-level field whose
    last change was a known-bad value (any later change under it, a drop or a wild value, voids that)."""
    if not isinstance(payload, dict) or any(field not in payload for field in required):
        return True
    verdict: dict[str | int, bool] = {}
    for mutation in mutations:
        verdict[mutation.path[0]] = mutation.kind == "bad"
    return any(verdict.values())
