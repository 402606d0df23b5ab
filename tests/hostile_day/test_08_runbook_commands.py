"""Hostile day, item 8: the runbook's commands work as written against a password-protected Redis.

The runbook's own shell set-up and kill-switch block are taken from ``docs/runbook.md`` and run in bash (the
``settlekeeper`` command on PATH, redis-cli for the check) against a Redis that requires a password (given as
``redis://:PASS@host``, how managed Redis URLs usually look): the switch is really set, read back and cleared,
and with a wrong password the command fails with a non-zero exit status and says why. The "settle by hand" listing, run
with curl and jq against the sandbox, lists every transfer due (it used to skip the first with ``offset=1``).
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from store import keys
from tests.support.redis_server import RedisServer
from tests.support.sandbox import Sandbox
from tests.support.tools import require

ROOT = Path(__file__).resolve().parents[2]
RUNBOOK = (ROOT / "docs" / "runbook.md").read_text()
TOOLS = {"bash": "bash", "redis-cli": "redis-tools", "curl": "curl", "jq": "jq"}


@pytest.fixture(autouse=True)
def operator_tools() -> None:
    """The operator's tools; skip without them, but fail in CI (``CI=true``), which must run these tests."""
    require(TOOLS)


def block_after(anchor: str) -> str:
    """The first ```sh block after ``<a id="anchor">`` in the runbook."""
    text = RUNBOOK.split(f'<a id="{anchor}"></a>', 1)[1]
    match = re.search(r"```sh\n(.*?)```", text, re.DOTALL)
    assert match is not None, anchor
    return match.group(1)


SETUP = block_after("tools")
KILL_SWITCH = block_after("remedy-kill-switch").splitlines()
SETTLE_BY_HAND = block_after("remedy-settle-by-hand")


async def shell(script: str, env: dict[str, str]) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "bash", "-c", script, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


def environment(redis_url: str, sandbox: Sandbox | None = None) -> dict[str, str]:
    env = {"PATH": f"{ROOT / '.venv' / 'bin'}:/usr/local/bin:/usr/bin:/bin", "SETTLEKEEPER_REDIS_URL": redis_url}
    env |= {"SETTLEKEEPER_BROKER_KEY": "sandbox-key", "SETTLEKEEPER_BROKER_SECRET": "sandbox-secret"}
    return env


async def test_item_8_the_kill_switch_commands_work_against_a_password_protected_redis(server: RedisServer) -> None:
    """pause, the check and resume of the runbook's block, each as written, with its set-up: each exits 0 and
    does it."""
    set_it, get_it, clear_it = KILL_SWITCH
    env = environment(server.url)
    client = server.client()

    status, out = await shell(f"{SETUP}\n{set_it}", env)
    assert (status, out.strip().startswith("PAUSED: no money moves until `settlekeeper resume`")) == (0, True), out
    assert client.get(keys.KILL_SWITCH) == b"deploy freeze - your name"
    status, out = await shell(f"{SETUP}\n{get_it}", env)
    assert (status, out.strip()) == (0, "deploy freeze - your name")
    status, out = await shell(f"{SETUP}\n{clear_it}", env)
    assert (status, out.strip()) == (0, "resumed: money moves again")
    assert client.get(keys.KILL_SWITCH) is None


async def test_item_8_a_wrong_password_fails_loudly(server: RedisServer) -> None:
    """With a wrong password the pause (and redis-cli's check) exit non-zero and say why; nothing is set."""
    set_it, get_it, _ = KILL_SWITCH
    env = environment(server.url.replace(server.password, "wrong-password"))
    status, out = await shell(f"{SETUP}\n{set_it}", env)
    assert status != 0
    assert "did not answer PING" in out
    assert "wrong-password" not in out
    status, out = await shell(f"{SETUP}\n{get_it}", env)
    assert status != 0
    assert "WRONGPASS" in out or "NOAUTH" in out
    assert server.client().get(keys.KILL_SWITCH) is None


async def test_item_8_settle_by_hand_lists_every_transfer_due(sandbox: Sandbox, server: RedisServer) -> None:
    """The listing of the runbook, against the sandbox: every executed transfer due, the first one included."""
    created = [await sandbox.create_transfer(f"810000000{n}", "10.00") for n in (1, 2, 3)]
    await sandbox.advance(1)
    listing = SETTLE_BY_HAND.split("curl -s $A $J -X POST", 1)[0]
    script = f"{SETUP}\nB={sandbox.base_url}\nD={created[0]['deadline']}\n{listing}"
    status, out = await shell(script, environment(server.url))
    assert status == 0, out
    listed = [line for line in out.splitlines() if line.startswith("{")]
    assert sorted(re.search(r'"id":"([^"]+)"', line).group(1) for line in listed) == sorted(  # type: ignore[union-attr]
        t["id"] for t in created
    )
