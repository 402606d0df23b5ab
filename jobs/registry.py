"""Which job a change causes, and where every job runs: the rule, the registry, the hand-off to RQ.

- **The rule** (:func:`actions_for`): what a transfer's new status causes. Python decides it here; the
  store only appends what was decided, atomically with the record and once per action id.
- **The registry**: each action kind and each business phase → its job function, queue and arguments
  (:data:`ACTION_JOBS`, :data:`PHASE_JOBS`).
- **The hand-off**: every job is enqueued through :func:`enqueue_once`, with a deterministic id, the JSON
  serializer, explicit TTLs and retries for transient errors.
"""

from __future__ import annotations

import hashlib
from datetime import date
from typing import Any

import redis
from rq import Queue, Retry
from rq.exceptions import DuplicateJobError
from rq.serializers import JSONSerializer

from funding.models import IFStatus, InstantFunding
from funding.records import Action, PlannedAction
from store import keys
from store.codec import texts

SETTLE_QUEUE = "settlekeeper-settle"
COVER_QUEUE = "settlekeeper-cover"
ALERT_QUEUE = "settlekeeper-alerts"

RESULT_TTL_SECONDS = 7 * 86400
"""A finished job's hash (and so ``unique=True``'s guard) lives a week, longer than any replay window."""
FAILURE_TTL_SECONDS = 30 * 86400
"""Failed jobs stay inspectable for a month (RQ's default of a year hides nothing useful)."""
JOB_TIMEOUT_SECONDS = 600

RETRY = Retry(max=3, interval=[10, 30, 120])
"""For transient errors only: a permanent one fails the job at once (``jobs.runtime.run_job``), so a retry
always means "try again later"; retries with an interval need a worker started with the scheduler."""

PHASE_JOBS = {
    "settle": ("jobs.settle.run_phase", SETTLE_QUEUE),
    "settle_retry": ("jobs.settle.run_phase", SETTLE_QUEUE),
    "late_check": ("jobs.settle.run_phase", SETTLE_QUEUE),
    "final_check": ("jobs.settle.run_phase", SETTLE_QUEUE),
    "sweep": ("jobs.cover.sweep", COVER_QUEUE),
    "if_reports": ("jobs.reports.if_reports", ALERT_QUEUE),
    "jit_reports": ("jobs.reports.jit_reports", ALERT_QUEUE),
    "ladder_digest": ("jobs.ladder.run_phase", ALERT_QUEUE),
    "ladder_warning": ("jobs.ladder.run_phase", ALERT_QUEUE),
    "ladder_page": ("jobs.ladder.run_phase", ALERT_QUEUE),
    "ladder_late": ("jobs.ladder.run_phase", ALERT_QUEUE),
    "ladder_forecast": ("jobs.ladder.run_phase", ALERT_QUEUE),
    "ladder_statement": ("jobs.ladder.run_phase", ALERT_QUEUE),
    "ladder_cancellations": ("jobs.ladder.run_phase", ALERT_QUEUE),
}
"""The business phases of a trading day and what each runs. The report and alert-ladder phases only read
and alert: they share the alert queue so they never wait behind a settle run (which may hold the settle
queue for minutes)."""
REPORT_PHASES = frozenset({"if_reports", "jit_reports"})
"""Phases whose job takes the ``system_date`` it reports on."""

ACTION_JOBS = {
    "cover": ("jobs.cover.cover_account", COVER_QUEUE),
    "replan": ("jobs.settle.replan", SETTLE_QUEUE),
}
"""What each action kind runs, and on which queue (its arguments: :func:`action_arguments`)."""
DELIVER_JOB = "jobs.alert_delivery.deliver"
"""The job that sends one state of one alert to its sinks (enqueued from the alert outbox)."""
REPLAN_PENDING_SECONDS = 86400
"""How long a queued re-plan keeps later changes from queueing another (the job clears it when it starts)."""


def actions_for(transfer: InstantFunding, today: date) -> list[PlannedAction]:
    """The event → action rule: the jobs a transfer's change causes (the store appends them only when the
    record is a change: a new status, never a replay or an older snapshot).

    - ``CANCELED`` → ``cover-<account>-<deadline>`` (queue ``settlekeeper-cover``): the 8 PM cancellation took
      the buying power back from the customer's cash, which may leave a debit to cover from RF.
    - any other change of a transfer due today → ``replan-<deadline>-<n>`` (queue ``settlekeeper-settle``): what
      is due changed (settled by the partner, interest booked), so the settlement is planned again; coalesced,
      one queued at a time until it starts. A cancellation plans nothing again: it only takes a transfer out
      of what is due (one in a settlement cannot be canceled), and at 8 PM one re-plan per canceled transfer,
      each run ahead of the covers on the settle queue, delayed every cover journal (bench/run).
    """
    deadline = transfer.deadline.isoformat()
    planned = []
    if transfer.status is IFStatus.CANCELED:
        planned.append(PlannedAction("cover", f"cover-{transfer.account_no}-{deadline}", transfer.account_no, deadline))
    if transfer.deadline == today and transfer.status is not IFStatus.CANCELED:
        planned.append(
            PlannedAction(
                "replan",
                f"replan-{deadline}",
                "",
                deadline,
                pending_key=keys.replan_pending(deadline),
                seq_key=keys.replan_seq(deadline),
            )
        )
    return planned


def action_arguments(action: Action) -> dict[str, str]:
    """The keyword arguments of an action's job."""
    if action.kind == "cover":
        return {"account_no": action.account_no, "deadline": action.deadline}
    return {"deadline": action.deadline}


def queue(name: str, connection: redis.Redis) -> Queue:
    """A settlekeeper queue: JSON serializer (amounts travel as strings), explicit TTLs."""
    return Queue(name, connection=connection, serializer=JSONSerializer, default_timeout=JOB_TIMEOUT_SECONDS)


def enqueue_action(connection: redis.Redis, action: Action) -> bool:
    """Enqueue the job of ``action`` with its deterministic id; False if it was already enqueued."""
    func, queue_name = ACTION_JOBS[action.kind]
    return enqueue_once(connection, queue_name, func, action_arguments(action), action.job_id)


MAX_COVERS_PER_JOB = 500
"""Accounts one batched cover job covers at most (:func:`enqueue_covers`)."""


def enqueue_covers(connection: redis.Redis, actions: list[Action]) -> bool:
    """Cover actions found in the outbox together (an 8 PM storm): one job per deadline and up to
    :data:`MAX_COVERS_PER_JOB` accounts, instead of one forked job each (about 40 ms of a worker per job before
    any work: bench/run "cancellation storm"). Its id is derived from the job ids it stands for, so handing the same
    actions over again after a crash finds it; an account in two jobs is covered once (the intent and its
    Idempotency-Key are per account and day). One action alone keeps its own job. False if already enqueued."""
    if len(actions) == 1:
        return enqueue_action(connection, actions[0])
    digest = hashlib.sha256("\n".join(sorted(a.job_id for a in actions)).encode()).hexdigest()[:20]
    deadline = actions[0].deadline
    kwargs = {"accounts": sorted({a.account_no for a in actions}), "deadline": deadline}
    return enqueue_once(connection, COVER_QUEUE, "jobs.cover.cover_accounts", kwargs, f"covers-{deadline}-{digest}")


def jobs_of(actions: list[Action]) -> list[list[Action]]:
    """Actions found together (the listener's outbox), grouped into jobs in order: the covers of one deadline
    together (up to :data:`MAX_COVERS_PER_JOB`), every other action alone."""
    groups: list[list[Action]] = []
    covers: dict[str, list[Action]] = {}
    for action in actions:
        if action.kind != "cover":
            groups.append([action])
            continue
        group = covers.get(action.deadline)
        if group is None or len(group) >= MAX_COVERS_PER_JOB:
            group = covers[action.deadline] = []
            groups.append(group)
        group.append(action)
    return groups


def enqueue_job(connection: redis.Redis, group: list[Action]) -> bool:
    """Enqueue the job of one group of :func:`jobs_of`; False if it was already enqueued."""
    return enqueue_covers(connection, group) if group[0].kind == "cover" else enqueue_action(connection, group[0])


def enqueue_once(connection: redis.Redis, queue_name: str, func: str, kwargs: dict[str, Any], job_id: str) -> bool:
    """Enqueue ``func`` with a deterministic ``job_id`` unless a job with that id exists (``unique=True``).

    Every settlekeeper job goes through here: JSON serializer, explicit TTLs, retries for transient errors.
    """
    try:
        queue(queue_name, connection).enqueue(
            func,
            kwargs=kwargs,
            job_id=job_id,
            unique=True,
            result_ttl=RESULT_TTL_SECONDS,
            failure_ttl=FAILURE_TTL_SECONDS,
            retry=RETRY,
        )
    except DuplicateJobError:
        return False
    return True


def _delivery_order(entry: str) -> tuple[int, str]:
    """Where an outbox entry ``<dedup>|<seq>|<state>`` goes: earlier incidents first, and within one the
    trigger, its escalations by severity, then the resolve, so one worker sends them as they happened."""
    _, seq, state = entry.rsplit("|", 2)
    rank = {"trigger": "0", "escalate-info": "1", "escalate-warning": "2", "escalate-critical": "3"}.get(state, "9")
    return int(seq), rank


def enqueue_alert_deliveries(connection: redis.Redis) -> int:
    """Hand every pending alert state change to the alert queue (unique job ids); returns how many."""
    from funding.alerts import delivery_job_id

    enqueued = 0
    entries = texts(connection.smembers(keys.ALERT_OUTBOX))
    for entry in sorted(entries, key=_delivery_order):  # a set has no order: incidents, then their states
        dedup_key, seq, action = entry.rsplit("|", 2)
        kwargs = {"dedup_key": dedup_key, "seq": int(seq), "action": action}
        job_id = delivery_job_id(dedup_key, int(seq), action)
        enqueued += enqueue_once(connection, ALERT_QUEUE, DELIVER_JOB, kwargs, job_id)
        connection.srem(keys.ALERT_OUTBOX, entry)
    return enqueued


def failed_job_ids(connection: redis.Redis) -> set[str]:
    """Ids of every job in the failed registries of settlekeeper's queues (one ZRANGE each)."""
    from rq.registry import FailedJobRegistry

    return {
        job_id
        for name in (SETTLE_QUEUE, COVER_QUEUE, ALERT_QUEUE)
        for job_id in FailedJobRegistry(queue=queue(name, connection)).get_job_ids()
    }


def job_function(connection: redis.Redis, job_id: str) -> str:
    """The dotted function name of a job (``?`` when its hash expired)."""
    from rq.exceptions import NoSuchJobError
    from rq.job import Job

    try:
        return Job.fetch(job_id, connection=connection, serializer=JSONSerializer).func_name or "?"
    except NoSuchJobError:
        return "?"


def enqueue_manual(connection: redis.Redis, kind: str, day: str, account_no: str = "") -> str:
    """An operator's run now, the same job as the schedule's (``settle``, or ``cover`` of one account or, with
    none, the sweep), under a manual id (``manual-settle-<day>-<n>``, ``manual-cover-<account>-<day>-<n>``,
    ``manual-sweep-<day>-<n>``); returns the job id."""
    n = int(connection.incr(keys.MANUAL_SEQ))
    if kind == "settle":
        func, queue_name = PHASE_JOBS["settle"]
        return _enqueued(connection, queue_name, func, {"phase": "manual", "deadline": day}, f"manual-settle-{day}-{n}")
    if not account_no:  # the 20:05 sweep: every account canceled that day
        func, queue_name = PHASE_JOBS["sweep"]
        return _enqueued(connection, queue_name, func, {"deadline": day}, f"manual-sweep-{day}-{n}")
    func, queue_name = ACTION_JOBS["cover"]
    kwargs = {"deadline": day, "account_no": account_no}
    return _enqueued(connection, queue_name, func, kwargs, f"manual-cover-{account_no}-{day}-{n}")


def _enqueued(connection: redis.Redis, queue_name: str, func: str, kwargs: dict[str, Any], job_id: str) -> str:
    enqueue_once(connection, queue_name, func, kwargs, job_id)
    return job_id


def enqueue_phase(connection: redis.Redis, phase: str, day: str) -> bool:
    """Enqueue a business phase for ``day`` once (job id ``phase-<name>-<day>``); False if it already was."""
    func, queue_name = PHASE_JOBS[phase]
    kwargs = {"deadline": day} if phase == "sweep" else {"phase": phase, "deadline": day}
    if phase in REPORT_PHASES:
        kwargs = {"system_date": day}
    return enqueue_once(connection, queue_name, func, kwargs, f"phase-{phase.replace('_', '-')}-{day}")
