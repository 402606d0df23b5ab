"""Hostile day, item 2: stream data never steers an authenticated REST request.

Events whose ids are paths (``../journals``, ``…/../../../v1/accounts``, percent-encoded dots, slashes) are put
on all three streams by the sandbox's ``inject`` fault, next to a real transfer. The sandbox logs every request
it receives: the listener asks only for the paths it means to (the streams, the transfer list, the one real
transfer, account lookups by number, a trade account by UUID, the clock and the limits), every hostile event is
dead-lettered with its own text (no answer of another endpoint in it), and the real transfer is recorded.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any
from urllib.parse import parse_qs

from store import keys
from store.transfers import TransferStore
from tests.support.listener import ListenerFactory, activity, dead_letters, eventually
from tests.support.sandbox import Sandbox
from tests.support.scenario import arm, customer, until_connected

HOSTILE_TRANSFER_IDS = [
    "../journals",
    "00000000-0000-0000-0000-000000000000/../../../v1/accounts",
    "../../../v1/accounts",
    "%2e%2e%2fjournals",
    "..%2F..%2Fv1%2Faccounts",
    "a/b",
    "?status=EXECUTED",
    "#fragment",
    {"nested": "object"},
    " 1234",
]
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
ALLOWED = [
    re.compile(p)
    for p in (
        r"/v2beta1/events/activities",
        r"/v2/events/journals/status",
        r"/v1/events/nta",
        r"/v1/instant_funding",
        rf"/v1/instant_funding/{UUID}",
        r"/v1/instant_funding/limits",
        r"/v1/transfers/jit/limits",
        r"/v1/accounts",
        rf"/v1/trading/accounts/{UUID}/account",
        r"/v1/clock",
    )
]
"""Every path the listener may request (GET only)."""


def hostile_events(account_id: str, real_transfer: str) -> list[str]:
    """Activity events naming hostile ids in ``details`` and in the description, and a real transfer with a
    hostile system date (the date is dropped; the transfer is still read, by its own id)."""
    events = [activity(account_id, details={"transfer_id": bad}) for bad in HOSTILE_TRANSFER_IDS]
    events.append(activity(account_id, activity_type="CSD", details={}, description="transfer_id: " + "-" * 36))
    events.append(activity(account_id, details={"transfer_id": real_transfer, "system_date": "../../v1/journals"}))
    events.append(activity("../../v1/accounts", details={"transfer_id": real_transfer}))
    return [json.dumps(event) for event in events]


def journal_events() -> list[str]:
    base: dict[str, Any] = {
        "event_id": "01KAQ0000000000000000000J1",
        "at": "2026-11-23T15:00:00Z",
        "entry_type": "JNLC",
        "status_from": "queued",
        "status_to": "executed",
    }
    return [json.dumps({**base, "journal_id": bad}) for bad in ("../accounts", "../../v1/journals", str(uuid.uuid4()))]


async def test_item_2_hostile_ids_in_events_never_reach_another_endpoint(
    sandbox: Sandbox, start_listener: ListenerFactory, store: TransferStore
) -> None:
    """Only the intended paths are requested; each hostile event is dead-lettered as invalid_id, holding only its
    own text; the real transfer named next to them is read by its id and recorded."""
    real = str((await sandbox.create_transfer(customer(1), "100.00"))["id"])
    await sandbox.advance(1)
    journal = {"entry_type": "JNLC", "from_account": await sandbox.account_id("7536050RF"), "amount": "10.00"}
    await sandbox.ok("POST", "/v1/journals", {**journal, "to_account": await sandbox.account_id("7536050SI")})
    account_id = await sandbox.account_id(customer(1))
    activities = hostile_events(account_id, real)
    journals = journal_events()
    for data in activities:
        await arm(sandbox, kind="inject", n=1, data=data, stream="activities", times=1)
    for data in journals:
        await arm(sandbox, kind="inject", n=1, data=data, stream="journals", times=1)
    await sandbox.ok("DELETE", "/sandbox/requests")

    running = await start_listener(sandbox, streams="activities,journals,nta")
    await until_connected(running)
    injected = len(activities) + len(journals)

    async def all_dead_lettered_and_recorded() -> bool:
        recorded = (await store.transfer(real)).get("status") == "EXECUTED"
        return recorded and len(await dead_letters(store)) >= injected - 2  # all but the real transfer and journal

    await eventually(all_dead_lettered_and_recorded)
    await running.halt()

    requests = (await sandbox.ok("GET", "/sandbox/requests"))["requests"]
    assert requests
    for request in requests:
        assert request["method"] == "GET", request
        assert any(p.fullmatch(request["path"]) for p in ALLOWED), request
        if request["path"] == "/v1/accounts":  # an account lookup names an account number, nothing else
            assert re.fullmatch(r"[0-9A-Z]+", parse_qs(request["query"])["query"][0]), request
    transfer_reads = {r["path"] for r in requests if re.fullmatch(rf"/v1/instant_funding/{UUID}", r["path"])}
    assert transfer_reads <= {f"/v1/instant_funding/{real}"}

    letters = await dead_letters(store)
    raws = {letter["raw"] for letter in letters}
    assert raws == (set(activities) - {activities[-2]}) | set(journals[:2])
    assert {letter["reason"] for letter in letters} == {"invalid_id", "invalid"}
    for letter in letters:  # nothing another endpoint answered is kept or logged with them
        assert "account_number" not in letter["detail"]
        assert "entry_type" not in letter["detail"] or letter["stream"] == "journals"
    assert await store.redis.zcard(keys.HINTS) == 0
