"""Store actions handed to RQ exactly once, with their queue, kwargs, serializer and TTLs (jobs/registry.py)."""

from __future__ import annotations

import json
import zlib

import pytest
import redis
from rq import Queue
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from funding.records import Action
from jobs.registry import (
    ACTION_JOBS,
    COVER_QUEUE,
    FAILURE_TTL_SECONDS,
    JOB_TIMEOUT_SECONDS,
    RESULT_TTL_SECONDS,
    SETTLE_QUEUE,
    actions_for,
    enqueue_action,
)
from tests.support.jobs import RunWorker
from tests.support.transfers import ACCOUNT, TODAY, make_transfer

DEADLINE = "2026-11-24"
COVER = Action("1-0", f"cover-8100000001-{DEADLINE}", "cover", "8100000001", DEADLINE)
REPLAN = Action("2-0", f"replan-{DEADLINE}-1", "replan", "", DEADLINE)


def fetch(connection: redis.Redis, job_id: str) -> Job:
    return Job.fetch(job_id, connection=connection, serializer=JSONSerializer)


@pytest.mark.parametrize(
    ("action", "queue_name", "func_name", "kwargs"),
    [
        (COVER, COVER_QUEUE, "jobs.cover.cover_account", {"deadline": DEADLINE, "account_no": "8100000001"}),
        (REPLAN, SETTLE_QUEUE, "jobs.settle.replan", {"deadline": DEADLINE}),
    ],
)
def test_action_goes_to_its_queue_with_its_kwargs(
    redis_client: redis.Redis, action: Action, queue_name: str, func_name: str, kwargs: dict[str, str]
) -> None:
    """Each action kind is enqueued on its queue, under its job id, calling its job with exactly its kwargs."""
    assert enqueue_action(redis_client, action)
    assert ACTION_JOBS[action.kind] == (func_name, queue_name)
    assert Queue(queue_name, connection=redis_client).job_ids == [action.job_id]
    job = fetch(redis_client, action.job_id)
    assert (job.func_name, job.args, job.kwargs) == (func_name, [], kwargs)
    other = SETTLE_QUEUE if queue_name == COVER_QUEUE else COVER_QUEUE
    assert Queue(other, connection=redis_client).job_ids == []


def test_same_action_is_enqueued_once(redis_client: redis.Redis) -> None:
    """Enqueuing the same action twice returns True then False and leaves one job with that id."""
    assert enqueue_action(redis_client, COVER) is True
    assert enqueue_action(redis_client, COVER) is False
    assert Queue(COVER_QUEUE, connection=redis_client).job_ids == [COVER.job_id]
    assert redis_client.keys("rq:job:*") == [f"rq:job:{COVER.job_id}".encode()]


def test_distinct_job_ids_are_distinct_jobs(redis_client: redis.Redis) -> None:
    """A later re-plan of the same day has its own job id and is enqueued beside the first."""
    later = Action("3-0", f"replan-{DEADLINE}-2", "replan", "", DEADLINE)
    assert enqueue_action(redis_client, REPLAN)
    assert enqueue_action(redis_client, later)
    assert Queue(SETTLE_QUEUE, connection=redis_client).job_ids == [REPLAN.job_id, later.job_id]


def test_job_settings_ttls_and_json_payload(redis_client: redis.Redis) -> None:
    """The job carries the result, failure and run TTLs of jobs/registry.py; its call is stored as JSON, not pickle."""
    enqueue_action(redis_client, COVER)
    job = fetch(redis_client, COVER.job_id)
    assert (job.result_ttl, job.failure_ttl, job.timeout) == (
        RESULT_TTL_SECONDS,
        FAILURE_TTL_SECONDS,
        JOB_TIMEOUT_SECONDS,
    )
    raw = redis_client.hget(f"rq:job:{COVER.job_id}", "data")
    assert raw is not None
    func, _instance, args, kwargs = json.loads(zlib.decompress(raw))  # RQ zlib-compresses the serialized call
    assert (func, args, kwargs) == ("jobs.cover.cover_account", [], {"deadline": DEADLINE, "account_no": "8100000001"})


async def test_burst_worker_runs_both_jobs_and_keeps_the_guard(
    redis_client: redis.Redis, job_env: object, run_worker: RunWorker
) -> None:
    """A real burst worker runs the enqueued jobs; the finished job still blocks a second enqueue of its id."""
    for action in (COVER, REPLAN):
        enqueue_action(redis_client, action)
    assert await run_worker()
    cover, replan = fetch(redis_client, COVER.job_id), fetch(redis_client, REPLAN.job_id)
    assert (cover.get_status(), replan.get_status()) == (JobStatus.FINISHED, JobStatus.FINISHED)
    assert cover.return_value()["outcome"] == "no_debit"
    assert replan.return_value()["outcome"] == "not_yet"  # the sandbox is at 10:00, before the 12:00 phase
    assert 0 < redis_client.ttl(f"rq:job:{COVER.job_id}") <= RESULT_TTL_SECONDS
    assert enqueue_action(redis_client, COVER) is False


def test_a_cancellation_causes_a_cover_and_no_replan_while_other_changes_of_a_day_due_replan() -> None:
    """A transfer due today canceled → its account's cover only; executed or completed → a re-plan of the day."""
    canceled = actions_for(make_transfer("CANCELED", deadline=TODAY), TODAY)
    assert [(a.kind, a.job_id) for a in canceled] == [("cover", f"cover-{ACCOUNT}-{TODAY}")]
    for status in ("EXECUTED", "COMPLETED"):
        assert [a.kind for a in actions_for(make_transfer(status, deadline=TODAY), TODAY)] == ["replan"]
