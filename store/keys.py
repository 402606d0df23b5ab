"""Every Redis key settlekeeper writes, in one place (RQ's own ``rq:*`` keys aside).

The Lua scripts in :mod:`store.transfers` build the per-date and per-id keys from :data:`PREFIX` with
the same shapes as the functions below (``due:``, ``due_cents:``, ``account:``, ``action:``,
``replan_pending:``, ``replan_seq:``, ``deadletter_seen:``); a test checks the two agree.

All keys share the ``sk:`` prefix so an operator can list them with ``SCAN MATCH sk:*``.
"""

from __future__ import annotations

from datetime import date

PREFIX = "sk:"


def transfer(transfer_id: str) -> str:
    """Hash: one IF transfer as last read from the Broker API (amounts as decimal strings); ``statuses``: every
    status it was recorded in, space-separated (the (transfer id, status) de-duplication)."""
    return f"{PREFIX}transfer:{transfer_id}"


def transfer_statuses(transfer_id: str) -> str:
    """Set: every status a transfer was recorded in, as the store kept them before 2026-12-03; they are now the
    ``statuses`` field of :func:`transfer` (a field costs some 20 bytes, the set 232), and the record step folds a
    set it still finds into that field and deletes it."""
    return f"{PREFIX}transfer:{transfer_id}:statuses"


def due(deadline: date | str) -> str:
    """Set: ids of unsettled transfers whose deadline is ``deadline``."""
    return f"{PREFIX}due:{deadline}"


def due_cents(deadline: date | str) -> str:
    """Integer: the remaining payable of those transfers, in cents (exact integer arithmetic)."""
    return f"{PREFIX}due_cents:{deadline}"


def account_transfers(account_no: str) -> str:
    """Set: ids of the transfers of one customer account."""
    return f"{PREFIX}account:{account_no}:transfers"


def system_date_transfers(day: date | str) -> str:
    """Set: ids of every transfer recorded with this system date (the IF report reconciliation reads it)."""
    return f"{PREFIX}system_date:{day}:transfers"


def cursor(stream: str) -> str:
    """String: the id of the last event of ``stream`` that was fully recorded."""
    return f"{PREFIX}cursor:{stream}"


def cursor_at(stream: str) -> str:
    """String: unix time when ``cursor(stream)`` last advanced (for the cursor-age metric)."""
    return f"{PREFIX}cursor_at:{stream}"


HINTS = f"{PREFIX}hints"
"""Sorted set: transfer ids named by events and not yet read over REST (score: first seen, unix ms)."""
HINT_DATES = f"{PREFIX}hint_dates"
"""Hash: hinted transfer id → the system date its event named (lets the resolver list a day at once)."""
HINT_SEQ = f"{PREFIX}hint_seq"
"""Integer: sequence giving every hint a unique score, so a newer hint is never released by mistake."""
UNSETTLED = f"{PREFIX}unsettled"
"""Set: ids of every transfer the store holds as PENDING or EXECUTED (what the heal poller checks)."""
ACCOUNT_IDS = f"{PREFIX}account_ids"
"""Hash: account number → account UUID, learned from ``GET /v1/accounts?query=`` (docs/broker-api.md "Account
numbers and ids")."""
IDENTITIES = f"{PREFIX}identities"
"""Hash: account number → its customer's transmitter identity (JSON: name and bank account number, from pages
of ``GET /v1/accounts`` or from ``GET /v1/accounts/{id}``), read for a settlement's ``transmitter_info``: one
field each, so a batch of 50,000 transfers reads its customers' in one ``HMGET``."""
SETTLED_BY = f"{PREFIX}settled_by"
"""Hash: transfer id → key of the settle intent that included it, written before the settlement POST, so
a COMPLETED transfer is stored as settled by ``settlekeeper`` (else by ``partner``)."""
RECORDS = f"{PREFIX}records"
"""Stream: normalized "transfer T moved from A to B at t, source S" records, append-only."""
DEAD_LETTERS = f"{PREFIX}deadletter"
"""Stream: events that could not be understood, kept for inspection."""
OUTBOX = f"{PREFIX}outbox"
"""Stream: actions decided with a record and not yet handed to RQ."""
LEADER = f"{PREFIX}leader"
"""String: the listener lease (value: holder token; TTL: the lease)."""
AUDIT = f"{PREFIX}audit"
"""Stream: append-only audit trail of decisions and money movements (never trimmed)."""
KILL_SWITCH = f"{PREFIX}kill"
KILL_SWITCH_META = f"{PREFIX}kill_meta"
MANUAL_SEQ = f"{PREFIX}manual_seq"
"""Integer: runs an operator asked for by hand (``settlekeeper settle``/``cover``): makes their job ids unique."""
"""Hash: who set the kill switch and since when (``settlekeeper pause``); absent when set straight in Redis."""
LISTENER_STATE = f"{PREFIX}listener"
"""Hash: the leading listener's own report (holder, term start, each stream's connection and liveness),
refreshed every lease renewal and expiring with it: what ``settlekeeper status`` shows of the listener."""
"""String: when present, no money call goes out; its value says why (set by an operator)."""
FORECAST = f"{PREFIX}forecast"
"""String (JSON): the latest RF prefunding forecast (jobs/forecast.py), for the jobs' gauges and ``status``."""
ALERTS = f"{PREFIX}alerts"
"""Stream: every alert state change (trigger, escalation, resolve), append-only, for the report and audits."""
FAILED_JOBS_PAGED = f"{PREFIX}failed_jobs_paged"
"""Set: ids of failed RQ jobs a ``job_failed`` alert was raised for (resolved when they leave the registry)."""
ALERT_OUTBOX = f"{PREFIX}alert_outbox"
"""Set: ``<dedup>|<seq>|<state>`` state changes whose delivery job is not enqueued yet."""


def alert(dedup_key: str) -> str:
    """Hash: one alert's state (triggered/resolved), incident sequence, severity rank and payload."""
    return f"{PREFIX}alert:{dedup_key}"


def alert_state_prefix(dedup_key: str) -> str:
    """The start of every :func:`alert_state` key of one alert (the alert script appends ``<seq>:<state>``)."""
    return f"{PREFIX}alert_state:{dedup_key}:"


def alert_state(dedup_key: str, seq: int, state: str) -> str:
    """Hash: one recorded state (``trigger``, ``escalate-<severity>``, ``resolve``) of incident ``seq``:
    ``payload`` (the alert as raised; for a resolve, as last triggered) and, for a resolve, ``resolution``.
    What its delivery job sends; expires after ``store.alert_state.RECORD_TTL_SECONDS``."""
    return f"{alert_state_prefix(dedup_key)}{seq}:{state}"


def alert_sent(dedup_key: str, seq: int, action: str, sink: str) -> str:
    """String: this state (``action``) of this alert reached ``sink`` (value: ``sent <status>`` or
    ``refused <status>``), so a retry or a replayed job never sends it again."""
    return f"{PREFIX}alert_sent:{dedup_key}:{seq}:{action}:{sink}"


def intent(key: str) -> str:
    """Hash: one money intent (what, why, amount, idempotency key, status, Alpaca's ids)."""
    return f"{PREFIX}intent:{key}"


def intent_transfers(key: str) -> str:
    """Set: the transfer ids a settle intent includes."""
    return f"{PREFIX}intent:{key}:transfers"


def intents_of(deadline: date | str) -> str:
    """Set: keys of every intent made for a deadline (or, for covers, the cancellation date)."""
    return f"{PREFIX}intents:{deadline}"


def accounted(deadline: date | str) -> str:
    """Set: the Alpaca ids (journals, settlements) of a deadline's movements that need no reconciliation: named
    in the audit trail (added in the same transaction as the entry), or found to be another deployment's."""
    return f"{PREFIX}accounted:{deadline}"


def moved_today(day: date | str) -> str:
    """Integer: cents moved out of RF by settlekeeper on a business day (the daily cap)."""
    return f"{PREFIX}moved:{day}"


def banking_days(day: date | str) -> str:
    """String (JSON): the banking calendar ``GET /v2/calendar/BMO`` answered on ``day`` (store/banking_days.py)."""
    return f"{PREFIX}banking_days:{day}"


def plan(deadline: date | str) -> str:
    """Hash: the settle plan of a deadline (attempt counter, last outcome)."""
    return f"{PREFIX}plan:{deadline}"


def transfer_costs(deadline: date | str) -> str:
    """Hash: transfer id → ``<late interest avoided>|<interest incurred>`` (decimal strings)."""
    return f"{PREFIX}costs:{deadline}:transfers"


def plan_lock(deadline: date | str) -> str:
    """String: the lock held by the one settle run of a deadline, and its heartbeat: a redis-py lock with a
    TTL of ``SETTLEKEEPER_SETTLE_HEARTBEAT_SECONDS`` renewed every third of it while the run's process lives,
    so it never outlives its owner by more than that."""
    return f"{PREFIX}plan:{deadline}:lock"


def settle_run(deadline: date | str) -> str:
    """Hash: the last settle run of a deadline: ``job_id``, ``phase``, ``started_at`` (business clock, ISO),
    ``ended_unix`` (wall clock; empty while it runs, or when it died), ``outcome``, ``left`` (transfers it left
    unsettled). With :func:`plan_lock` it tells the listener's guard whether a run is alive, ended or died."""
    return f"{PREFIX}settle_run:{deadline}"


def settle_guard(deadline: date | str) -> str:
    """String: the id of the last settle job the listener's guard enqueued for a deadline (one waits at most)."""
    return f"{PREFIX}settle_guard:{deadline}"


def settle_guard_seq(deadline: date | str) -> str:
    """Integer: how many guard runs were enqueued for a deadline (makes each guard job id unique)."""
    return f"{PREFIX}settle_guard_seq:{deadline}"


def costs(deadline: date | str) -> str:
    """Hash: late interest avoided/incurred and margin interest estimates for a deadline."""
    return f"{PREFIX}costs:{deadline}"


def metrics(family: str) -> str:
    """Hash: one job metric family (``job_duration``, ``money_movements``, ``alerts``, ``settle``): fields are
    label values joined by ``|``, values integers (counts, cents, milliseconds); see :mod:`jobs.job_metrics`."""
    return f"{PREFIX}metrics:{family}"


def cover_outcomes(deadline: date | str) -> str:
    """Hash: account number → outcome of its last cover run for ``deadline`` (the accounts-in-debit gauge)."""
    return f"{PREFIX}cover_outcomes:{deadline}"


def action(job_id: str) -> str:
    """String: marks an action as decided once (SET NX), so replays never enqueue it again."""
    return f"{PREFIX}action:{job_id}"


def dead_letter_seen(identity: str) -> str:
    """String: marks a dead letter as kept once (SET NX), so a replayed bad event is not added again."""
    return f"{PREFIX}deadletter_seen:{identity}"


def replan_seq(deadline: date | str) -> str:
    """Integer: how many re-plans of ``deadline`` were decided (makes each re-plan's job id unique)."""
    return f"{PREFIX}replan_seq:{deadline}"


def journal(journal_id: str) -> str:
    """Hash: the last status of a journal settlekeeper follows (from the journal status stream)."""
    return f"{PREFIX}journal:{journal_id}"


def journal_key(idempotency_key: str) -> str:
    """Hash: journal id and last status of the journal created under an ``Idempotency-Key`` (from the journal
    status stream; kept 14 days)."""
    return f"{PREFIX}journal_key:{idempotency_key}"


def replan_pending(deadline: date | str) -> str:
    """String: a re-plan of ``deadline``'s settlement is queued and has not started (coalescing)."""
    return f"{PREFIX}replan_pending:{deadline}"


def jit_report(system_date: date | str) -> str:
    """Hash: the check of a system date's JIT reports (outcome, per-bucket sums, settlement instructions)."""
    return f"{PREFIX}jit:{system_date}"


def if_report(system_date: date | str) -> str:
    """Hash: the reconciliation of a system date's instant funding reports with the store (differences)."""
    return f"{PREFIX}if_report:{system_date}"
