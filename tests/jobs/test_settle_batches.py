"""The settle job at scale: transmitter info per transfer, and days that need more than one settlement."""

from __future__ import annotations

import functools
import json
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
import redis

from funding.calendar import ET
from funding.planning import chunks
from jobs.registry import enqueue_phase
from sandbox.engine import Engine
from store import keys
from tests.support.jobs import RunWorker
from tests.support.sandbox import Sandbox, SandboxFactory

RF, SI, FW = "7536050RF", "7536050SI", "7536050FW"


async def noon_on_deadline(sandbox: Sandbox, amounts: list[str]) -> tuple[list[dict[str, Any]], str]:
    """One transfer per customer (8100000001, ...) a second apart, executed; the clock at 12:00 ET on their deadline."""
    created = []
    for n, amount in enumerate(amounts):
        created.append(await sandbox.create_transfer(f"81{n + 1:08d}", amount))
        await sandbox.advance(1)
    deadline = str(created[0]["deadline"])
    await sandbox.set_clock(datetime.fromisoformat(f"{deadline}T12:00:00").replace(tzinfo=ET))
    return created, deadline


@pytest.fixture
def posted(monkeypatch: pytest.MonkeyPatch) -> list[list[dict[str, Any]]]:
    """The ``transfers`` of every settlement the in-process sandbox receives."""
    bodies: list[list[dict[str, Any]]] = []
    create = Engine.create_settlement

    def record(engine: Engine, transfers: list[dict[str, Any]], additional_info: str | None) -> Any:
        bodies.append(transfers)
        return create(engine, transfers, additional_info)

    monkeypatch.setattr(Engine, "create_settlement", record)
    return bodies


async def test_transmitter_info_is_identity_template_and_overrides(
    make_sandbox: SandboxFactory,
    job_env: Any,
    run_worker: RunWorker,
    redis_client: redis.Redis,
    posted: list[list[dict[str, Any]]],
) -> None:
    """Every transfer carries its customer's name and account number, the template and that account's overrides."""
    sandbox = await make_sandbox(settlement_delay_seconds=0, financial_institution=True)
    job_env(
        sandbox,
        transmitter_template='{"originator_country": "USA", "originator_bank_name": "Partner Bank", "note": ""}',
        transmitter_overrides='{"8100000002": {"originator_bank_name": "Other Bank"}}',
    )
    created, deadline = await noon_on_deadline(sandbox, ["10.00", "20.00", "30.00"])
    assert enqueue_phase(redis_client, "settle", deadline)
    assert await run_worker()
    [transfers] = posted
    assert [t["instant_transfer_id"] for t in transfers] == [t["id"] for t in created]
    info = {t["instant_transfer_id"]: t["transmitter_info"] for t in transfers}
    assert info[created[0]["id"]] == {
        "originator_full_name": "Ada Lovelace",
        "originator_bank_account_number": "8100000001",
        "originator_country": "USA",
        "originator_bank_name": "Partner Bank",
    }
    assert info[created[1]["id"]]["originator_bank_name"] == "Other Bank"
    assert info[created[2]["id"]]["originator_full_name"] == "Alan Lovelace"
    assert json.loads(redis_client.hget(keys.IDENTITIES, "8100000003")) == {  # type: ignore[arg-type]
        "originator_full_name": "Alan Lovelace",
        "originator_bank_account_number": "8100000003",
    }
    settlements = (await sandbox.ok("GET", "/v1/instant_funding/settlements"))["settlements"]
    assert [s["status"] for s in settlements] == ["COMPLETED"]


async def test_cached_identity_is_used_without_reading_the_account(
    make_sandbox: SandboxFactory,
    job_env: Any,
    run_worker: RunWorker,
    redis_client: redis.Redis,
    posted: list[list[dict[str, Any]]],
) -> None:
    """An identity already in Redis is what the settlement carries (the account is not read again)."""
    sandbox = await make_sandbox(settlement_delay_seconds=0, financial_institution=True)
    job_env(sandbox, transmitter_template='{"originator_country": "USA", "originator_bank_name": "Partner Bank"}')
    _, deadline = await noon_on_deadline(sandbox, ["10.00"])
    cached = {"originator_full_name": "A. Lovelace (cached)", "originator_bank_account_number": "8100000001"}
    redis_client.hset(keys.IDENTITIES, "8100000001", json.dumps(cached))
    assert enqueue_phase(redis_client, "settle", deadline)
    assert await run_worker()
    assert posted[0][0]["transmitter_info"] == {
        **cached,
        "originator_country": "USA",
        "originator_bank_name": "Partner Bank",
    }


async def test_each_settlement_is_funded_for_its_own_transfers(
    make_sandbox: SandboxFactory,
    job_env: Any,
    run_worker: RunWorker,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """More transfers than one settlement takes: one RF → SI journal per settlement, of exactly what it needs.

    SI is swept to zero after each settlement (docs/broker-api.md "Settlements"), so funding everything up front
    would send the second
    batch's money to FW and leave that settlement waiting for funds.
    """
    monkeypatch.setattr("jobs.settle.chunks", functools.partial(chunks, size=2))
    sandbox = await make_sandbox(settlement_delay_seconds=0)
    job_env(sandbox)
    amounts = ["100.00", "250.50", "75.25", "10.01", "999.99"]
    created, deadline = await noon_on_deadline(sandbox, amounts)
    rf, fw = await sandbox.cash(RF), await sandbox.cash(FW)
    assert enqueue_phase(redis_client, "settle", deadline)
    assert await run_worker()
    for transfer in created:
        assert (await sandbox.ok("GET", f"/v1/instant_funding/{transfer['id']}"))["status"] == "COMPLETED"
    settlements = (await sandbox.ok("GET", "/v1/instant_funding/settlements"))["settlements"]
    assert [(s["status"], s["total_amount"]) for s in settlements] == [
        ("COMPLETED", "350.50"),
        ("COMPLETED", "85.26"),
        ("COMPLETED", "999.99"),
    ]
    journals = await sandbox.ok("GET", "/v1/journals")
    assert [j["net_amount"] for j in journals] == ["350.50", "85.26", "999.99"]
    assert rf - await sandbox.cash(RF) == sum(Decimal(a) for a in amounts)
    assert (await sandbox.cash(FW), await sandbox.cash(SI)) == (fw, 0)
