"""Plain `rq worker` and `settlekeeper work` both run settlekeeper's jobs (same settings, JSON serializer)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
import redis
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from funding.records import Action
from jobs.registry import COVER_QUEUE, SETTLE_QUEUE, enqueue_action
from tests.support.sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[2]
RQ = str(Path(sys.executable).with_name("rq"))


def worker_commands(url: str) -> dict[str, list[str]]:
    return {
        "rq": [
            RQ,
            "worker",
            "--burst",
            "-u",
            url,
            "-S",
            "rq.serializers.JSONSerializer",
            "-w",
            "rq.worker.SimpleWorker",
            SETTLE_QUEUE,
            COVER_QUEUE,
        ],
        "settlekeeper": [sys.executable, "-m", "cli.main", "work", "--burst", "--worker-class", "simple"],
    }


@pytest.mark.parametrize("command", ["rq", "settlekeeper"])
async def test_worker_command_runs_a_cover_job(
    command: str, sandbox: Sandbox, session_redis_url: str, redis_client: redis.Redis
) -> None:
    """A cover job enqueued by the listener's code is run to completion by either worker command."""
    action = Action("1-0", "cover-8100000001-2026-11-24", "cover", "8100000001", "2026-11-24")
    assert enqueue_action(redis_client, action)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "SETTLEKEEPER_REDIS_URL": session_redis_url,
        "SETTLEKEEPER_BROKER_URL": sandbox.base_url,
        "SETTLEKEEPER_LOG_FORMAT": "json",
    }
    proc = await asyncio.create_subprocess_exec(
        *worker_commands(session_redis_url)[command],
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, output.decode()[-2000:]
    job = Job.fetch(action.job_id, connection=redis_client, serializer=JSONSerializer)
    assert job.get_status() == JobStatus.FINISHED
    assert job.return_value()["outcome"] == "no_debit"
