"""The sandbox's answers and events against Alpaca's published Broker API document."""

from __future__ import annotations

from tests.support.conformance import drive_rest, drive_streams
from tests.support.contract import DOCUMENT, SHARED_COPY, Coverage, operation_path
from tests.support.sandbox import Sandbox

MOVED = {"/v2beta1/events/journals/status"}
"""Served only as the 308 to /v2 that the document announces (tests/worker/test_lenient_input.py follows it)."""


def served_endpoints(sandbox: Sandbox) -> set[tuple[str, str]]:
    """Every Broker API route the sandbox serves (its admin routes and the announced redirect aside), as the
    document's templates."""
    return {
        (route.method, operation_path(route.resource.canonical))
        for route in sandbox.app.router.routes()
        if route.resource is not None
        and route.method in ("GET", "POST", "PATCH", "DELETE")
        and not route.resource.canonical.startswith("/sandbox/")
        and route.resource.canonical not in MOVED
    }


async def test_every_answer_and_event_conforms_to_the_document(sandbox: Sandbox) -> None:
    """Every endpoint the sandbox serves and every event kind it streams validates against the document."""
    coverage = Coverage()
    await drive_rest(sandbox, coverage)
    await drive_streams(sandbox, coverage)
    kinds = sorted(f"{path.rsplit('/', 1)[-1]}:{kind}" for path, kind in coverage.events)
    print(
        f"\nchecked against the document: {len(coverage.endpoints)} endpoints ({sum(coverage.endpoints.values())} "
        f"answers), {len(coverage.events)} event kinds ({sum(coverage.events.values())} events): {', '.join(kinds)}"
    )
    assert not coverage.violations, "\n".join(coverage.violations)
    assert served_endpoints(sandbox) - set(coverage.endpoints) == set(), "served but never checked"
    assert len({path for path, _ in coverage.events}) == 3


def test_the_document_is_alpacas_copy_unchanged() -> None:
    """contract/ holds the reference document byte for byte (checked wherever the shared copy is at hand)."""
    assert DOCUMENT.stat().st_size > 600_000
    if SHARED_COPY.exists():
        assert DOCUMENT.read_bytes() == SHARED_COPY.read_bytes()
