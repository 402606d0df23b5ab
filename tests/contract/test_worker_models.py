"""The worker's own models against the examples Alpaca's document gives for every schema the worker reads."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from funding.models import (
    Account,
    JITLimits,
    Journal,
    JournalStatusEvent,
    MarketCalendar,
    NTAEvent,
    TradeAccount,
)
from funding.money import loads_exact
from tests.support.contract import errors, examples_of, response_examples

READS: list[tuple[type[BaseModel], str]] = [
    (Journal, "Journal"),
    (Journal, "BatchJournalResponse"),
    (Account, "Account"),
    (Account, "AccountExtended"),
    (TradeAccount, "TradeAccount"),
    (JITLimits, "DailyTradingLimit"),
    (MarketCalendar, "public_calendar_resp"),
    (JournalStatusEvent, "JournalStatusEventV2"),
    (NTAEvent, "NonTradeActivityEvent"),
]
"""Worker model → the document's schema of what it parses. The document gives no example, whole or composable
from its properties, for InstantFunding, SettlementResponse, ReportsResponse, CorrespondentLimit, AccountLimit or
ActivityEventV2;
those are held to the document by the sandbox's conformance test and the worker's tests against it."""
BAD_IDS = "is not a 'uuid'"


def as_on_the_wire(example: Any) -> Any:
    """The example as the worker receives it: JSON text parsed exactly (numbers with a fraction as Decimals)."""
    return loads_exact(json.dumps(example))


def cases() -> list[Any]:
    found = []
    for model, schema in READS:
        examples = examples_of(schema)
        assert examples, f"the document gives no example for {schema}: move it to the list without one"
        found += [pytest.param(model, schema, e, id=f"{model.__name__}:{label}") for label, e in examples]
    return found


@pytest.mark.parametrize(("model", "schema", "example"), cases())
def test_the_worker_parses_the_documents_example(model: type[BaseModel], schema: str, example: Any) -> None:
    """Each example parses, unless its ids are not UUIDs (the document's own defect): then it is refused cleanly."""
    broken = errors(example, f"#/components/schemas/{schema}")
    if any(BAD_IDS in problem for problem in broken):
        with pytest.raises(ValidationError):
            model.model_validate(as_on_the_wire(example))
        return
    parsed = model.model_validate(as_on_the_wire(example))
    assert parsed.model_dump()


def test_every_response_example_of_the_endpoints_the_worker_calls_parses() -> None:
    """The examples given on the operations themselves (not their schemas) parse too."""
    operations: list[tuple[type[BaseModel], str, str, bool]] = [
        (TradeAccount, "GET", "/v1/trading/accounts/{account_id}/account", False),
        (JITLimits, "GET", "/v1/transfers/jit/limits", False),
        (Account, "GET", "/v1/accounts", True),
        (JournalStatusEvent, "GET", "/v2/events/journals/status", True),
        (NTAEvent, "GET", "/v1/events/nta", False),
    ]
    parsed = 0
    for model, method, template, many in operations:
        for example in response_examples(method, template):
            for row in example if many and isinstance(example, list) else [example]:
                model.model_validate(as_on_the_wire(row))
                parsed += 1
    assert parsed >= len(operations)
