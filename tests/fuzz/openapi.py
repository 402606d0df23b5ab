"""Instances of the Broker API document's schemas, for Hypothesis: every answer and event the document allows.

The schemas are the document's as tests/support/contract.py reads them (optional properties also allow null,
``oneOf`` read as ``anyOf``), with local ``$ref`` followed. hypothesis-jsonschema generates each leaf (strings
with their formats and patterns, numbers with their bounds); objects and arrays are composed here, because
hypothesis-jsonschema 0.23's object strategy uses a Hypothesis internal (``many.more()``) that Hypothesis 6.170
no longer has. Arrays hold at most three items and objects draw each optional property or not.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from tests.fuzz.wild import money, ulids, uuids
from tests.support.contract import response_pointer, validated_document

FORMATS: dict[str, st.SearchStrategy[str]] = {
    "decimal": money(),
    "uuid": uuids(),
    "ulid": ulids(),
}
"""Formats hypothesis-jsonschema does not know (it would generate any text for them)."""
_ANNOTATIONS = {"description", "title", "example", "examples", "x-examples", "deprecated", "readOnly", "nullable"}
_MAX_DEPTH = 8


def _at(pointer: str) -> Any:
    node: Any = validated_document()
    for part in pointer.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _merged(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """An ``allOf`` as one object schema: properties and required names united (the document only composes objects)."""
    out: dict[str, Any] = {"type": "object", "properties": {}, "required": []}
    for part in parts:
        out["properties"].update(part.get("properties", {}))
        out["required"] += part.get("required", [])
    return out


def _resolved(node: Any, seen: frozenset[str]) -> tuple[Any, frozenset[str]]:
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        if ref in seen:
            return {}, seen  # a recursive schema: cut here
        seen = seen | {ref}
        node = {**_at(ref), **{k: v for k, v in node.items() if k != "$ref"}}
    return node, seen


def _strategy(node: Any, depth: int, seen: frozenset[str]) -> st.SearchStrategy[Any]:
    node, seen = _resolved(node, seen)
    if not isinstance(node, dict) or depth > _MAX_DEPTH:
        return st.none()
    if "allOf" in node:
        parts = [_resolved(part, seen)[0] for part in node["allOf"]]
        rest = {k: v for k, v in node.items() if k != "allOf"}
        return _strategy(_merged([rest, *parts]), depth, seen)
    for key in ("anyOf", "oneOf"):
        if key in node:
            return st.one_of([_strategy(branch, depth + 1, seen) for branch in node[key]])
    if node.get("enum"):
        return st.sampled_from(node["enum"])
    if node.get("type") == "object" or "properties" in node:
        properties = node.get("properties", {})
        required = set(node.get("required", []))
        drawn = {name: _strategy(schema, depth + 1, seen) for name, schema in properties.items()}
        return st.fixed_dictionaries(
            {name: s for name, s in drawn.items() if name in required},
            optional={name: s for name, s in drawn.items() if name not in required},
        )
    if node.get("type") == "array":
        return st.lists(_strategy(node.get("items", {}), depth + 1, seen), max_size=3)
    leaf = {k: v for k, v in node.items() if k not in _ANNOTATIONS and not k.startswith("x-")}
    if not leaf or "$ref" in json.dumps(leaf):  # an untyped map of objects (additionalProperties): left out
        return st.none()
    return from_schema(leaf, custom_formats=FORMATS)


@functools.cache
def answers(method: str, template: str, status: int = 200) -> st.SearchStrategy[Any]:
    """What the document says ``method template`` answers with ``status`` (an SSE stream: one event)."""
    return _strategy({"$ref": response_pointer(method, template, status)}, 0, frozenset())


@functools.cache
def schema(name: str) -> st.SearchStrategy[Any]:
    """Instances of ``components/schemas/<name>``."""
    return _strategy({"$ref": f"#/components/schemas/{name}"}, 0, frozenset())
