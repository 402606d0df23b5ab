"""``settlekeeper dead-letters``: list them, retry (what they name is read again over REST), drop with a reason."""

from __future__ import annotations

import json

import redis

from funding.records import DeadLetter
from store import keys
from store.transfers import TransferStore
from tests.cli.test_oncall import cli_env, settlekeeper
from tests.support.listener import ListenerFactory, activity, eventually
from tests.support.sandbox import Sandbox
from tests.support.scenario import until_connected


async def test_retry_reads_the_transfer_again_keeps_the_unreadable_and_drop_audits_it(
    sandbox: Sandbox,
    store: TransferStore,
    redis_client: redis.Redis,
    session_redis_url: str,
    start_listener: ListenerFactory,
) -> None:
    """A REST dead letter of a transfer that now exists is retried and recorded; an unknown activity type stays
    (exit 1, why); dropped with a reason it leaves the stream and its content stays in the audit."""
    transfer_id = str((await sandbox.create_transfer("8100000001", "25.00"))["id"])
    await sandbox.advance(1)
    unknown = json.dumps(activity(await sandbox.account_id("8100000001"), activity_type="XYZ"))
    letters = [
        DeadLetter("rest", "unknown_transfer", f"transfer {transfer_id} does not exist", transfer_id),
        DeadLetter("activities", "unknown_type", "activity type 'XYZ'", unknown),
    ]
    await store.ingest("activities", None, [], letters, now=1.0)
    env = cli_env(sandbox, session_redis_url)
    code, out, _ = await settlekeeper("dead-letters", "--json", env=env)
    listed = json.loads(out)
    assert (code, [(e["stream"], e["reason"]) for e in listed]) == (
        1, [("rest", "unknown_transfer"), ("activities", "unknown_type")]
    )  # fmt: skip
    rest_id, event_id = listed[0]["id"], listed[1]["id"]
    running = await start_listener(sandbox)
    await until_connected(running)

    code, out, _ = await settlekeeper("dead-letters", "retry", "--all", env=env)
    lines = out.splitlines()
    assert code == 1
    assert lines == [
        f"{rest_id}: retried: transfer {transfer_id} is read again over REST",
        f"{event_id}: still cannot be read (unknown_type: activity type 'XYZ'); kept",
    ]

    async def recorded() -> bool:
        return (await store.transfer(transfer_id)).get("status") == "EXECUTED"

    await eventually(recorded, within=5)
    code, _, err = await settlekeeper("dead-letters", "drop", event_id, env=env)
    assert (code, "--reason" in err) == (2, True)
    code, out, _ = await settlekeeper(
        "dead-letters", "drop", event_id, "--reason", "a test type", "--by", "ada", env=env
    )
    assert (code, out.strip()) == (0, f"{event_id}: dropped (kept in the audit, with your reason)")
    code, out, _ = await settlekeeper("dead-letters", env=env)
    assert (code, out.strip()) == (0, "0 dead letters")
    dropped = [row for _, row in redis_client.xrange(keys.AUDIT) if row[b"event"] == b"dead_letter_dropped"]
    facts = json.loads(dropped[0][b"facts"])
    assert (facts["by"], facts["reason"], facts["letter"]["raw"]) == ("ada", "a test type", unknown)
    await running.halt()
