"""Alpaca's published Broker API document as a validator: the schema of every answer and SSE event, as the
document gives it (contract/alpaca-broker-openapi.yaml, a verbatim copy), never a hand-copied schema."""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import yaml
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

DOCUMENT = Path(__file__).resolve().parents[2] / "contract" / "alpaca-broker-openapi.yaml"
SHARED_COPY = Path(__file__).resolve().parents[3] / "shared" / "reference" / "alpaca-broker-openapi.yaml"
_URI = "urn:alpaca-broker-openapi"
_NULL = {"type": "null"}
_EXAMPLES = {"example", "examples", "x-examples"}
_ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")

FORMATS = FormatChecker()
if not {"date-time", "date", "uuid"} <= set(FORMATS.checkers):  # jsonschema skips a format it cannot check
    raise RuntimeError("the contract tests need rfc3339-validator (a dev dependency) to check date-times")


@FORMATS.checks("ulid")
def _is_ulid(value: object) -> bool:
    return not isinstance(value, str) or bool(_ULID.match(value))


@FORMATS.checks("decimal", raises=InvalidOperation)
def _is_decimal(value: object) -> bool:
    return not isinstance(value, str) or Decimal(value).is_finite()


@functools.cache
def document() -> dict[str, Any]:
    """The document, parsed once per test session."""
    with DOCUMENT.open("rb") as handle:
        loaded: dict[str, Any] = yaml.load(handle, Loader=yaml.CSafeLoader)
    return loaded


def _as_validated(node: Any) -> Any:
    """The document as OpenAPI reads it, in JSON Schema terms: every optional property also allows null (Alpaca's
    own payloads send nulls); a ``oneOf`` is read as ``anyOf`` (its branches are not exclusive: every field of
    ``TradeActivity`` is optional, so any ``NonTradeActivity`` also fits it), and a discriminator picks its one
    branch."""
    if isinstance(node, list):
        return [_as_validated(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: value if key in _EXAMPLES else _as_validated(value) for key, value in node.items()}
    properties = out.get("properties")
    if isinstance(properties, dict):
        required = set(out.get("required", []))
        out["properties"] = {
            name: schema if name in required else {"anyOf": [_NULL, schema]} for name, schema in properties.items()
        }
    if "oneOf" in out:  # the document's branches are not exclusive (all optional): read as OpenAPI tools do
        out["anyOf"] = out.pop("oneOf")
    discriminator = out.pop("discriminator", None)
    if isinstance(discriminator, dict) and discriminator.get("mapping"):
        name, mapping = discriminator["propertyName"], discriminator["mapping"]
        branches = [
            {"if": {"properties": {name: {"const": value}}, "required": [name]}, "then": {"$ref": target}}
            for value, target in mapping.items()
        ]
        picked = {"properties": {name: {"enum": list(mapping)}}, "required": [name], "allOf": branches}
        for holder in [out, *out.get("allOf", [])]:
            if isinstance(holder, dict) and "anyOf" in holder:
                holder.pop("anyOf")
                holder.update(picked)
                break
    return out


@functools.cache
def validated_document() -> dict[str, Any]:
    """The document in the JSON Schema terms the validators read it in (:func:`_as_validated`); tests/fuzz
    generates answers from it."""
    converted: dict[str, Any] = _as_validated(document())
    return converted


@functools.cache
def _registry() -> Registry[Any]:
    resource = Resource(contents=validated_document(), specification=DRAFT202012)
    return Registry().with_resource(_URI, resource)


def _template_regex(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", template)
    return re.compile("^" + "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts) + "$")


@functools.cache
def _templates() -> list[tuple[str, re.Pattern[str]]]:
    """The document's paths, literal ones first so /v1/journals/batch never matches /v1/journals/{id}."""
    paths = sorted(document()["paths"], key=lambda p: (p.count("{"), -len(p)))
    return [(path, _template_regex(path)) for path in paths]


def operation_path(path: str) -> str:
    """The document's path template that a concrete request path falls under."""
    for template, pattern in _templates():
        if pattern.match(path):
            return template
    raise KeyError(f"{path} is not an endpoint of the document")


def _pointer(*parts: str) -> str:
    return "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


ERROR = "#/components/schemas/Error"
"""The document's one error object; the schema of a refusal whose status the operation does not describe."""


def response_pointer(method: str, template: str, status: int) -> str:
    """The JSON pointer to the schema of one answer; an SSE stream's pointer is the schema of its items."""
    responses = document()["paths"][template][method.lower()]["responses"]
    key = next((k for k in (str(status), f"{str(status)[0]}XX", "default") if k in responses), None)
    if key is None:
        if status < 400:
            raise KeyError(f"{method} {template} does not document a {status} answer")
        return ERROR
    response = responses[key]
    base = ["paths", template, method.lower(), "responses", key]
    if "$ref" in response:
        base = response["$ref"].removeprefix("#/").split("/")
        response = document()["components"]["responses"][base[-1]]
    if "content" not in response:
        return ERROR
    media, content = next(iter(response["content"].items()))
    schema = content["schema"]
    suffix = ["items"] if media == "text/event-stream" and schema.get("type") == "array" else []
    return "#/" + _pointer(*base, "content", media, "schema", *suffix)


def schema_at(pointer: str) -> dict[str, Any]:
    return {"$ref": _URI + pointer}


def errors(instance: Any, pointer: str) -> list[str]:
    """Every way the instance breaks the schema at the pointer, one readable line each."""
    validator = Draft202012Validator(schema_at(pointer), registry=_registry(), format_checker=FORMATS)
    found: list[ValidationError] = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    return [_describe(error) for error in found]


def _describe(error: ValidationError) -> str:
    """The most specific reason, looking past the null branch the tolerance wrapper adds."""
    while error.context:
        context = error.context
        if error.validator == "anyOf" and error.validator_value[0] == _NULL:
            context = [e for e in context if e.relative_schema_path[0] != 0]
        deepest = best_match(context)
        if deepest is None:
            break
        error = deepest
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return f"{where}: {error.message[:300]}"


_KIND_FIELDS = ("activity_type", "status_to", "entry_type")


@dataclass
class Coverage:
    """What a conformance run checked: answers per endpoint and events per stream, with every violation."""

    endpoints: dict[tuple[str, str], int] = field(default_factory=dict)
    events: dict[tuple[str, str], int] = field(default_factory=dict)
    """(stream path, event kind: activity type, journal status reached, NTA entry type) → events checked."""
    violations: list[str] = field(default_factory=list)

    def answer(self, method: str, path: str, status: int, body: Any) -> None:
        template = operation_path(path.split("?")[0])
        self.endpoints[(method, template)] = self.endpoints.get((method, template), 0) + 1
        if status == 204:
            return  # no content: nothing to validate
        pointer = response_pointer(method, template, status)
        for problem in errors(body, pointer):
            self.violations.append(f"{method} {template} {status}: {problem}")

    def event(self, stream_path: str, event: Any) -> None:
        pointer = response_pointer("GET", stream_path, 200)
        kind = next((str(event[k]) for k in _KIND_FIELDS if isinstance(event, dict) and k in event), "?")
        self.events[(stream_path, kind)] = self.events.get((stream_path, kind), 0) + 1
        self.endpoints[("GET", stream_path)] = self.endpoints.get(("GET", stream_path), 0) + 1
        for problem in errors(event, pointer):
            self.violations.append(f"event {stream_path}: {problem}")


def _resolve(node: Any) -> Any:
    """Follow a local ``$ref`` (once per level) to what it names."""
    while isinstance(node, dict) and "$ref" in node:
        target: Any = document()
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def schema_examples(name: str) -> list[Any]:
    """Every example the document gives for ``components/schemas/<name>``: its ``example``, its ``x-examples``,
    and those of each schema it is built from (``allOf``)."""
    schema = document()["components"]["schemas"][name]
    found = [schema["example"]] if "example" in schema else []
    found += list((schema.get("x-examples") or {}).values())
    return found


def response_examples(method: str, template: str, status: int = 200) -> list[Any]:
    """Every example of one answer: the response's own ``examples``/``example``, then its schema's (an array
    schema's item examples are wrapped in a list)."""
    response = _resolve(document()["paths"][template][method.lower()]["responses"][str(status)])
    content = next(iter(response.get("content", {}).values()), {})
    found = [
        e["value"] if isinstance(e, dict) and "value" in e else e for e in (content.get("examples") or {}).values()
    ]
    if "example" in content:
        found.append(content["example"])
    schema = content.get("schema", {})
    items = schema.get("items", {}) if schema.get("type") == "array" else None
    ref = (items if items is not None else schema).get("$ref", "")
    if ref.startswith("#/components/schemas/"):
        named = schema_examples(ref.rsplit("/", 1)[-1])
        found += [[e] for e in named] if items is not None else named
    return found


_MISSING = object()


def composed_example(node: Any, depth: int = 0) -> Any:
    """An instance built from the document's per-property ``example`` values (for a schema with no example of
    its own): an enum's first value, an array of one item; ``_MISSING`` where nothing is given."""
    node = _resolve(node)
    if not isinstance(node, dict) or depth > 8:
        return _MISSING
    if "example" in node:
        return node["example"]
    if node.get("enum"):
        return node["enum"][0]
    if "allOf" in node:
        merged: dict[str, Any] = {}
        for part in node["allOf"]:
            value = composed_example(part, depth + 1)
            if isinstance(value, dict):
                merged.update(value)
        rest = composed_example({k: v for k, v in node.items() if k != "allOf"}, depth + 1)
        return {**merged, **rest} if isinstance(rest, dict) else merged
    for key in ("anyOf", "oneOf"):
        if key in node:
            return composed_example(node[key][0], depth + 1)
    if node.get("type") == "array" and "items" in node:
        item = composed_example(node["items"], depth + 1)
        return _MISSING if item is _MISSING else [item]
    if "properties" in node:
        built = {name: composed_example(prop, depth + 1) for name, prop in node["properties"].items()}
        return {name: value for name, value in built.items() if value is not _MISSING}
    return _MISSING


def examples_of(name: str) -> list[tuple[str, Any]]:
    """(label, instance) for every example of a schema; a composed one when the document gives none whole."""
    given = schema_examples(name)
    if given:
        return [(f"{name} example {n}", example) for n, example in enumerate(given, 1)]
    composed = composed_example(document()["components"]["schemas"][name])
    if not composed or composed is _MISSING or errors(composed, f"#/components/schemas/{name}"):
        return []  # the properties' examples do not make a valid instance
    return [(f"{name} (composed from its properties' examples)", composed)]


def _parameters(method: str, template: str) -> dict[str, dict[str, Any]]:
    """The query parameters an operation documents, by name (path-level ones included)."""
    item = document()["paths"][template]
    listed = [*item.get("parameters", []), *item[method.lower()].get("parameters", [])]
    resolved = [_resolve(p) for p in listed]
    return {p["name"]: p for p in resolved if p.get("in") == "query"}


def _typed(value: str, schema: dict[str, Any]) -> Any:
    """A query string value as the type its schema names (what a server would read it as)."""
    kind = schema.get("type")
    try:
        if kind == "integer":
            return int(value)
        if kind == "number":
            return float(value)
    except ValueError:
        return value
    if kind == "boolean":
        return {"true": True, "false": False}.get(value, value)
    if kind == "array":
        return [_typed(part, _resolve(schema.get("items", {}))) for part in value.split(",")]
    return value


def request_errors(method: str, path: str, query: str, body: str) -> list[str]:
    """Every way one request breaks the document: an undocumented path or query parameter, a value outside its
    schema (type, format, enum, minimum), a missing required parameter, a body outside the request schema."""
    try:
        template = operation_path(path)
    except KeyError as exc:
        return [str(exc)]
    operation = document()["paths"][template].get(method.lower())
    if operation is None:
        return [f"{method} {template} is not an operation of the document"]
    params = _parameters(method, template)
    found: list[str] = []
    given = parse_qsl(query, keep_blank_values=True)
    for name, value in given:
        if name not in params:
            found.append(f"{method} {template}: query parameter {name!r} is not documented")
            continue
        pointer = _parameter_pointer(method, template, name)
        found += [
            f"{method} {template} ?{name}={value[:40]}: {p}"
            for p in errors(_typed(value, _resolve(params[name]["schema"])), pointer)
        ]
    for name, param in params.items():
        if param.get("required") and name not in dict(given):
            found.append(f"{method} {template}: required query parameter {name!r} is missing")
    schema = (operation.get("requestBody") or {}).get("content", {}).get("application/json", {}).get("schema")
    if body and schema is not None:
        base = ["paths", template, method.lower(), "requestBody", "content", "application/json", "schema"]
        found += [f"{method} {template} body: {p}" for p in errors(json.loads(body), "#/" + _pointer(*base))]
    return found


def _parameter_pointer(method: str, template: str, name: str) -> str:
    """The pointer to a query parameter's schema (inline or under components/parameters)."""
    item = document()["paths"][template]
    for where, listed in (
        ("", item.get("parameters", [])),
        (method.lower(), item[method.lower()].get("parameters", [])),
    ):
        for index, param in enumerate(listed):
            if _resolve(param).get("name") == name:
                if "$ref" in param:
                    return param["$ref"] + "/schema"
                parts = ["paths", template, *([where] if where else []), "parameters", str(index), "schema"]
                return "#/" + _pointer(*parts)
    raise KeyError(name)
