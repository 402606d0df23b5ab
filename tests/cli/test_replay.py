"""``settlekeeper replay``: a stream's history read again, what it names handed to the store, the cursor left."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re

from store import keys
from store.transfers import TransferStore
from tests.cli.test_oncall import cli_env, settlekeeper
from tests.support.cli import ROOT, command, finish
from tests.support.sandbox import MONDAY_10AM, Sandbox
from tests.support.settle import create_transfers


async def test_replay_hints_every_transfer_again_and_leaves_the_cursor(
    sandbox: Sandbox, store: TransferStore, session_redis_url: str
) -> None:
    """Three transfers' events since Monday become three hints (twice over: the same three), cursor untouched;
    the NTA stream's replay ends once it is idle; a ULID works as the starting point too."""
    created = await create_transfers(sandbox, ["10.00", "20.00", "30.00"])
    await sandbox.advance(1)
    env = cli_env(sandbox, session_redis_url)
    day = MONDAY_10AM.date().isoformat()
    for _ in range(2):
        code, out, _ = await settlekeeper("replay", "--stream", "activities", "--since", day, "--json", env=env)
        found = json.loads(out)
        assert (code, found["events"], found["hints"], found["dead_letters"]) == (0, 3, 3, 0)
    assert {m.decode() for m in await store.redis.zrange(keys.HINTS, 0, -1)} == {row["id"] for row in created}
    assert await store.cursor("activities") is None  # the listener's cursor is not the replay's
    code, out, _ = await settlekeeper("replay", "--stream", "nta", "--since", day, env=env)
    assert (code, out.strip()) == (
        0,
        f"replayed 3 events of nta since {day}: 3 transfer hints, 0 journal statuses, 0 dead letters",
    )
    code, out, _ = await settlekeeper(
        "replay", "--stream", "activities", "--since", "00000000000000000000000000", "--json", env=env
    )
    assert json.loads(out)["events"] == 3


async def test_on_a_terminal_replay_draws_a_progress_bar_with_rate_and_eta(
    sandbox: Sandbox, session_redis_url: str
) -> None:
    """stderr on a pseudo-terminal: the bar ends full with the events read, a rate and an ETA; stdout stays plain."""
    await create_transfers(sandbox, ["10.00", "20.00"])
    await sandbox.advance(1)
    leader, follower = pty.openpty()
    try:
        proc = await asyncio.create_subprocess_exec(
            *command(),
            "replay",
            "--stream",
            "activities",
            "--since",
            MONDAY_10AM.date().isoformat(),
            cwd=ROOT,
            env=cli_env(sandbox, session_redis_url),
            stdout=asyncio.subprocess.PIPE,
            stderr=follower,
        )
        os.close(follower)
        out, _ = await finish(proc, within=60)
        terminal = os.read(leader, 65536).decode()
    finally:
        os.close(leader)
    assert proc.returncode == 0, terminal
    assert re.search(r"\r\[#{30}\] 2 events, \d+/s, ETA 0 s\r?\n", terminal), terminal
    assert out.decode().startswith("replayed 2 events of activities since")
    assert "\x1b[" not in out.decode()
