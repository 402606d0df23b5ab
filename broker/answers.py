"""Broker API answers as the project's models: a shape that does not fit is the error tree's MalformedDataError."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from funding.errors import MalformedDataError

M = TypeVar("M", bound=BaseModel)


def parsed(model: type[M], body: Any, where: str) -> M:
    """``body`` as ``model``; an answer that does not fit it is a :class:`MalformedDataError` naming the
    first field that did not (callers catch the error tree, never pydantic's)."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise _malformed(model, where, exc) from exc


def parsed_all(model: type[M], rows: Any, where: str) -> list[M]:
    """Every row of a list answer as ``model`` (one check for the page: the common case costs nothing)."""
    if not isinstance(rows, list):
        raise MalformedDataError(f"{where}: expected a list of {model.__name__}, got {type(rows).__name__}")
    try:
        return [model.model_validate(row) for row in rows]
    except ValidationError as exc:
        raise _malformed(model, where, exc) from exc


def _malformed(model: type[BaseModel], where: str, exc: ValidationError) -> MalformedDataError:
    first = exc.errors(include_url=False, include_input=False)[0]
    field = ".".join(str(part) for part in first["loc"]) or "?"
    return MalformedDataError(f"{where}: the answer is not a valid {model.__name__}: {field}: {first['msg']}")
