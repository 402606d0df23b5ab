"""The settle job at scale: transmitter info per transfer, and days that need more than one settlement."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
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


@dataclass
class IdentityDay:
    """A day of one transfer per customer settled at noon with no identity cached, and what it read."""

    make_sandbox: SandboxFactory
    job_env: Any
    run_worker: RunWorker
    redis_client: redis.Redis
    posted: list[list[dict[str, Any]]]
    monkeypatch: pytest.MonkeyPatch

    def list_from(self, missing: int, *, page: int | None = None, reads_per_page: int | None = None) -> None:
        """Read identities by listing from ``missing`` on, in pages of ``page`` accounts worth ``reads_per_page``."""
        self.monkeypatch.setattr("jobs.settlements.LIST_IDENTITIES_FROM", missing)
        if page is not None:
            self.monkeypatch.setattr("sandbox.api.MAX_ACCOUNTS", page)
            self.monkeypatch.setattr("broker.paging.ACCOUNTS_PAGE", page)
        if reads_per_page is not None:
            self.monkeypatch.setattr("jobs.settlements.ACCOUNTS_PER_LISTED_PAGE", reads_per_page)

    async def settle(self, customers: int, sandbox_customers: int = 10, **fault: Any) -> list[str]:
        """Settle with every account id known (as the listener records them) and ``fault`` armed if given: the
        account reads in order (``listing`` for a page of ``GET /v1/accounts``, else the account number
        ``GET /v1/accounts/{id}`` read); each transfer's transmitter info is checked to carry its customer's name."""
        sandbox = await self.make_sandbox(
            settlement_delay_seconds=0, financial_institution=True, customers=sandbox_customers
        )
        self.job_env(sandbox, transmitter_template='{"originator_country": "USA", "originator_bank_name": "Bank"}')
        created, deadline = await noon_on_deadline(sandbox, ["10.00"] * customers)
        numbers = {await sandbox.account_id(no): no for no in [t["account_no"] for t in created] + [RF, SI, FW]}
        self.redis_client.hset(keys.ACCOUNT_IDS, mapping={no: account_id for account_id, no in numbers.items()})
        await sandbox.ok("DELETE", "/sandbox/requests")
        if fault:
            await sandbox.ok("POST", "/sandbox/faults", fault)
        assert enqueue_phase(self.redis_client, "settle", deadline)
        assert await self.run_worker()
        reads = []
        for request in (await sandbox.ok("GET", "/sandbox/requests"))["requests"]:
            if request["method"] == "GET" and request["path"] == "/v1/accounts":
                reads.append("listing")
            elif request["method"] == "GET" and request["path"].startswith("/v1/accounts/"):
                reads.append(numbers.get(request["path"].rsplit("/", 1)[1], request["path"]))
        info = {t["instant_transfer_id"]: t["transmitter_info"] for batch in self.posted for t in batch}
        names = ["Ada Lovelace", "Grace Lovelace", "Alan Lovelace", "Edsger Lovelace", "Barbara Lovelace"]
        assert {i: info[i]["originator_full_name"] for i in info} == {t["id"]: names[n] for n, t in enumerate(created)}
        settlements = (await sandbox.ok("GET", "/v1/instant_funding/settlements"))["settlements"]
        assert [s["status"] for s in settlements] == ["COMPLETED"]
        return reads


@pytest.fixture
def identity_day(
    make_sandbox: SandboxFactory,
    job_env: Any,
    run_worker: RunWorker,
    redis_client: redis.Redis,
    posted: list[list[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
) -> IdentityDay:
    return IdentityDay(make_sandbox, job_env, run_worker, redis_client, posted, monkeypatch)


async def test_many_missing_identities_come_from_pages_of_the_account_listing(identity_day: IdentityDay) -> None:
    """Enough identities missing: pages of ``GET /v1/accounts?entities=identity`` carry them (no account read one
    by one), and every account met on those pages is cached, owing today or not."""
    identity_day.list_from(2, page=3, reads_per_page=1)
    reads = await identity_day.settle(customers=5, sandbox_customers=8)
    # pages of 3, each after the first starting at the last one's account: [SI RF FW] [FW DP 1] [1 2 3] [3 4 5]
    assert reads == ["listing"] * 4
    cached = {k.decode() for k in identity_day.redis_client.hkeys(keys.IDENTITIES)}
    assert cached == {f"81{n:08d}" for n in range(1, 6)} | {"7536050SI", "7536050RF", "7536050FW", "7536050DP"}


async def test_identities_the_listing_did_not_reach_within_its_budget_are_read_one_by_one(
    identity_day: IdentityDay,
) -> None:
    """The listing stops at the pages worth reading the missing ones one by one; those it did not reach are read
    with ``GET /v1/accounts/{id}``, each once."""
    identity_day.list_from(2, page=3, reads_per_page=2)  # 5 missing: two pages
    reads = await identity_day.settle(customers=5)
    assert reads[:2] == ["listing"] * 2  # [SI RF FW] [FW DP 8100000001]
    assert sorted(reads[2:]) == ["8100000002", "8100000003", "8100000004", "8100000005"]


async def test_a_refused_account_listing_leaves_the_identities_to_reads_one_by_one(identity_day: IdentityDay) -> None:
    """A listing answered 403 (a key without that permission) is not the settlement's failure: each identity is
    read by ``GET /v1/accounts/{id}`` and the settlement goes out complete."""
    identity_day.list_from(2)
    fault = {"kind": "http_error", "status": 403, "path": "/v1/accounts", "method": "GET", "times": 1}
    reads = await identity_day.settle(customers=5, **fault)
    assert reads[0] == "listing"
    assert sorted(reads[1:]) == [f"81{n:08d}" for n in range(1, 6)]


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
