"""Hostile day, item 6: a bad port or a misspelled variable stops start-up with a clear message (exit 2).

``--metrics-port 99999`` used to raise ``OverflowError`` and ``-5`` was accepted; ``SETTLEKEEPER_SETTLE_MOD=off``
was silently ignored, leaving settle mode ``on``. Now each is refused before anything starts, naming what was
wrong (and, for a misspelling, the closest setting).
"""

from __future__ import annotations

import asyncio
import sys

import pytest

from config.settings import load_settings
from funding.errors import ConfigError
from tests.support.processes import ROOT, environment


async def run(args: list[str], **settings: str) -> tuple[int, str, str]:
    env = environment("redis://127.0.0.1:1/0", "http://127.0.0.1:9", **settings)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli.main", *args, cwd=ROOT, env=env, stdout=-1, stderr=-1
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize(
    "args",
    [
        ["work", "--metrics-port", "99999"],
        ["work", "--metrics-port", "-5"],
        ["work", "--metrics-port", "nine"],
        ["sandbox", "--port", "70000"],
    ],
)
async def test_item_6_a_port_out_of_range_is_refused_at_start_up(args: list[str]) -> None:
    """Exit 2 with argparse's usage line and the range; no traceback, nothing started."""
    status, out, err = await run(args)
    assert status == 2
    assert "expected a port number from 0 to 65535" in err
    assert "Traceback" not in out + err


async def test_item_6_a_misspelled_variable_stops_start_up_with_the_closest_name() -> None:
    """SETTLEKEEPER_SETTLE_MOD=off: exit 2, naming the variable and SETTLEKEEPER_SETTLE_MODE."""
    status, out, err = await run(["work"], settle_mod="off")
    assert status == 2
    assert err.strip() == (
        "settlekeeper: invalid configuration: SETTLEKEEPER_SETTLE_MOD: not a setting "
        "(did you mean SETTLEKEEPER_SETTLE_MODE?)"
    )
    assert "Traceback" not in out + err


def test_item_6_unknown_variables_are_refused_by_the_settings_too() -> None:
    """load_settings refuses every SETTLEKEEPER_* name that is no setting; other variables are not its business."""
    with pytest.raises(ConfigError) as refused:
        load_settings({"SETTLEKEEPER_SETTLE_MOD": "off", "SETTLEKEEPER_ZZZ": "1", "PATH": "/bin"})
    assert str(refused.value) == (
        "invalid configuration: SETTLEKEEPER_SETTLE_MOD: not a setting (did you mean SETTLEKEEPER_SETTLE_MODE?); "
        "SETTLEKEEPER_ZZZ: not a setting"
    )
    assert load_settings({"SETTLEKEEPER_SETTLE_MODE": "off", "PATH": "/bin"}).mode("settle") == "off"
