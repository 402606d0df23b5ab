"""Hostile day, item 10: the demo report reads consistently, and the sandbox survives its own fault tools.

The demo writes every amount one way (``16,500.00``, never ``16500.00``), and a settlement's line carries the
time its table does; the sandbox's ``inject`` fault can send bytes that are not UTF-8 without crashing its
stream handler, ``GET /sandbox/faults`` lists what is armed, and the start-up banner never prints the secret.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
from pathlib import Path

from tests.support.cli import LISTENING, ROOT, clean_env, command, read_until
from tests.support.demo import run_demo, section
from tests.support.sandbox import Sandbox

UNGROUPED_AMOUNT = re.compile(r"(?<![\d,.])\d{4,}\.\d{2}(?!\d)")
"""1000.00 and up written without thousands separators."""


async def test_item_10_the_demo_writes_amounts_one_way_and_settlement_times_agree(tmp_path: Path) -> None:
    """`demo --days 1`: no amount of 1,000 or more without its separators (the rf_short alert used to print
    16500.00), and each settlement's COMPLETED line is stamped with the completion its table shows."""
    out, _ = await run_demo("--days", "1", "--speed", "10000", log_dir=tmp_path, within=55)
    assert UNGROUPED_AMOUNT.findall(out) == []
    progress, _, report = out.partition("══ Report")
    assert re.search(r"ALERT +critical rf_short: RF cannot cover 2026-11-24: 4 transfers \(16,500\.00\)", progress)
    line = re.compile(r"^(\w{3} \d\d-\d\d \d\d:\d\d)  alpaca +settlement (\w+) by \w+ COMPLETED", re.M)
    completed_lines = {short: stamp for stamp, short in line.findall(progress)}
    rows = section(report, "Settlements").splitlines()[1:]
    assert rows
    for row in rows:
        short, completed = row.split()[0], " ".join(row.split()[5:8])  # id, by, created (3 words), completed
        assert completed_lines[short] == completed, row


async def test_item_10_inject_sends_bytes_that_are_not_utf8_and_the_stream_goes_on(sandbox: Sandbox) -> None:
    """A lone surrogate in the fault's JSON data (how JSON spells a raw byte) is sent as that byte; the
    handler does not crash and the next event follows."""
    await sandbox.create_transfer("8100000001", "10.00")
    await sandbox.advance(1)
    body = '{"kind": "inject", "stream": "activities", "n": 1, "times": 1, "data": "{\\"memo\\": \\"caf\\udce9\\"}"}'
    async with sandbox.http.post(
        sandbox.base_url + "/sandbox/faults", data=body, headers={"Content-Type": "application/json"}
    ) as resp:
        assert resp.status == 200
    listed = await sandbox.ok("GET", "/sandbox/faults")
    assert [(f["kind"], f["times"]) for f in listed["faults"]] == [("inject", 1)]
    raw = b""
    async with sandbox.http.get(
        sandbox.base_url + "/v2beta1/events/activities", params={"since": "2026-11-20"}
    ) as resp:
        async with asyncio.timeout(5):
            while raw.count(b"\ndata: ") < 2:
                raw += await resp.content.readany()
    assert b'data: {"memo": "caf\xe9"}\n\n' in raw
    first_real = raw.split(b'data: {"memo": "caf\xe9"}\n\n', 1)[1]
    assert json.loads(first_real.split(b"\n", 1)[0].removeprefix(b"data: "))["activity_type"]
    assert (await sandbox.ok("GET", "/sandbox/faults"))["faults"] == []


async def test_item_10_the_sandbox_banner_never_prints_the_secret() -> None:
    """With a secret of its own the banner names the variable instead; its curl example works once $S holds it."""
    secret = "banner-must-not-show-this"
    proc = await asyncio.create_subprocess_exec(
        *command(), "sandbox", "--port", "0", cwd=ROOT,
        env=clean_env(SETTLEKEEPER_SANDBOX_SECRET=secret, SETTLEKEEPER_LOG_FORMAT="json"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        _, seen = await read_until(proc.stdout, LISTENING)
        example, more = await read_until(proc.stdout, re.compile(r"^\s*(curl -s -u \S+ \S+/v1/accounts)\s*$"))
        assert not [line for line in seen + more if secret in line]
        shell = await asyncio.create_subprocess_exec(
            "bash", "-c", example.group(1), env={"PATH": "/usr/bin:/bin", "S": secret}, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await asyncio.wait_for(shell.communicate(), 20)
        assert {"7536050SI", "7536050RF"} <= {a["account_number"] for a in json.loads(out)}
        assert shlex.split(example.group(1))[3] == "sandbox-key:$S"
    finally:
        proc.kill()
        await proc.wait()
