"""Running settlekeeper demo as a user does, and reading its report."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from tests.support.cli import clean_env, finish, start


def session_members(session: int) -> list[str]:
    """Processes (not zombies) of ``session``: what a run left behind."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state, _, _, sid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:4]
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError):
            continue
        if int(sid) == session and state != "Z":
            found.append(f"{entry.name} {cmdline}")
    return found


async def start_demo(*args: str, log_dir: Path) -> asyncio.subprocess.Process:
    return await start("demo", *args, "--log-dir", str(log_dir), env=clean_env(), new_session=True)


async def run_demo(*args: str, log_dir: Path, within: float) -> tuple[str, str]:
    """Run the demo to its end; returns (stdout, stderr) and checks that nothing it started is still running."""
    proc = await start_demo(*args, log_dir=log_dir)
    out, err = await finish(proc, within)
    (log_dir / "stdout.txt").write_bytes(out)  # the whole output, next to the processes' logs
    assert proc.returncode == 0, err.decode()[-2000:]
    assert session_members(proc.pid) == []
    return out.decode(), err.decode()


def section(report: str, title: str) -> str:
    """The lines of one report section (from its title to the next blank line)."""
    match = re.search(rf"^{re.escape(title)}.*?\n(.*?)(?:\n\n|\Z)", report, re.M | re.S)
    assert match is not None, f"no section {title!r} in:\n{report}"
    return match.group(1)
