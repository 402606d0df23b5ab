"""Hints and the heal poller → REST reads → records; then the outbox → RQ.

Events are hints (docs/broker-api.md "Events are hints"): the resolver reads every transfer an event named
over REST and records what Alpaca returns, with the actions the rule decides for the change
(:func:`jobs.registry.actions_for`). The heal poller lists every non-final transfer and re-reads every
transfer the store still holds as unsettled, so a lost event is healed within one poll. Both feed the same
:meth:`store.transfers.TransferStore.record`, which de-duplicates by (transfer id, status).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import date, datetime

import redis
import structlog

from broker.client import BrokerClient
from funding.calendar import to_et
from funding.errors import AuthenticationError, LeaseLostError, NotFoundError, RetryableError, SettlekeeperError
from funding.models import IFStatus, InstantFunding
from funding.records import Action, DeadLetter
from jobs.registry import actions_for, enqueue_job, jobs_of
from store.accounts import AccountIds
from store.transfers import TransferStore, cents
from worker.listener_metrics import ListenerMetrics

log = structlog.get_logger(__name__)

OUTBOX_BATCH = 1000
"""Outbox entries handed to RQ per read: an 8 PM storm's covers go out in jobs of hundreds of accounts."""
HINT_BATCH = 2048
"""Hints read per round."""
LIST_A_DAY_FROM = 50
"""From this many hints naming one system date, the resolver lists that day (100 per request: "batched through
the list endpoint", docs/broker-api.md "Events are hints") instead of reading each transfer on its own."""


class Resolver:
    def __init__(
        self,
        broker: BrokerClient,
        store: TransferStore,
        rq_connection: redis.Redis,
        metrics: ListenerMetrics,
        *,
        concurrency: int,
        token: Callable[[], str],
        now: Callable[[], datetime],
    ) -> None:
        self.broker = broker
        self.store = store
        self.rq = rq_connection
        self.metrics = metrics
        self._limit = asyncio.Semaphore(concurrency)
        self._token = token
        self._now = now
        self.accounts = AccountIds(store.redis, broker.find_account)
        self.wake = asyncio.Event()
        """Set when new hints were committed."""
        self._dispatching = asyncio.Lock()
        """The hint loop and the heal poller both dispatch; one at a time, so no action is handed over twice."""

    @property
    def today(self) -> date:
        return to_et(self._now()).date()

    # ------------------------------------------------------------------ hints

    async def run(self, stop: asyncio.Event) -> None:
        """Resolve hints as they arrive until ``stop``; LeaseLostError propagates."""
        while not stop.is_set():
            try:
                worked = await self.resolve_hints()
                await self.dispatch()
            except RetryableError as exc:
                self.metrics.rest_errors.labels(type(exc).__name__).inc()
                log.warning("resolve_retry", error=str(exc))
                worked = False
                await asyncio.sleep(1.0)
            except (redis.ConnectionError, redis.TimeoutError) as exc:  # Redis down longer than the retries
                self.metrics.redis_up.set(0)
                log.warning("resolve_retry", error=f"Redis: {type(exc).__name__}: {exc}"[:300])
                worked = False
                await asyncio.sleep(1.0)
            if not worked:
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), timeout=1.0)

    async def resolve_hints(self) -> bool:
        """Read up to one batch of hinted transfers and record them; True if there was any."""
        hints = await self.store.pending_hints(HINT_BATCH)
        self.metrics.hints.set(await self.store.hint_count())
        if not hints:
            return False
        scores = dict(hints)
        by_day: dict[str, list[str]] = {}
        for transfer_id, day in (await self.store.hint_dates(list(scores))).items():
            by_day.setdefault(day, []).append(transfer_id)
        for day, ids in by_day.items():
            if len(ids) < LIST_A_DAY_FROM:
                continue
            listed = {str(t.id): t for t in await self.broker.list_transfers(system_date=date.fromisoformat(day))}
            found = [(listed[i], scores.pop(i)) for i in ids if i in listed]
            await asyncio.gather(*(self._apply_listed(transfer, score) for transfer, score in found))
        await asyncio.gather(*(self._resolve(transfer_id, score) for transfer_id, score in scores.items()))
        self.metrics.hints.set(await self.store.hint_count())
        return True

    async def _apply_listed(self, transfer: InstantFunding, score: float) -> None:
        """Record a hinted transfer read in its day's listing (a few at a time: an 8 PM storm names thousands)."""
        async with self._limit:
            await self.apply(transfer, source="stream")
            await self.store.release_hint(str(transfer.id), score)

    async def _resolve(self, transfer_id: str, score: float) -> None:
        """Read one hinted transfer on its own (few hints for its day, or no day known)."""
        async with self._limit:
            try:
                transfer = await self.broker.get_transfer(transfer_id)
            except NotFoundError:
                await self._dead("unknown_transfer", f"transfer {transfer_id} does not exist", transfer_id)
                await self.store.release_hint(transfer_id, score)
                return
            except SettlekeeperError as exc:
                if isinstance(exc, RetryableError | AuthenticationError):
                    raise
                await self._dead("unreadable_transfer", str(exc)[:300], transfer_id)
                await self.store.release_hint(transfer_id, score)
                return
            await self.apply(transfer, source="stream")
            await self.store.release_hint(transfer_id, score)

    async def apply(self, transfer: InstantFunding, *, source: str) -> None:
        """Record one transfer as read from the Broker API, unless its status or account is unknown."""
        if not transfer.status.known:
            await self._dead("unknown_status", f"transfer status {transfer.status.value!r}", str(transfer.id))
            return
        if not await self.accounts.known(transfer.account_no):
            await self._dead("unknown_account", f"account {transfer.account_no} not found", str(transfer.id))
            return
        outcome = await self.store.record(
            transfer,
            source=source,
            observed_at=self._now(),
            actions=actions_for(transfer, self.today),
            token=self._token(),
        )
        self.metrics.records.labels(source, outcome.result).inc()
        if outcome.result == "recorded":
            log.info(
                "transfer_recorded",
                transfer_id=str(transfer.id),
                account_no=transfer.account_no,
                status_from=outcome.previous_status,
                status_to=transfer.status.value,
                source=source,
                deadline=transfer.deadline.isoformat(),
            )

    async def _dead(self, reason: str, detail: str, transfer_id: str) -> None:
        letter = DeadLetter("rest", reason, detail, transfer_id)
        if await self.store.ingest("rest", None, [], [letter], token=self._token(), now=time.time()):  # once each
            self.metrics.malformed.labels("rest", reason).inc()
            log.warning("transfer_dead_lettered", reason=reason, detail=detail, transfer_id=transfer_id)

    # ------------------------------------------------------------------ heal

    async def heal(self) -> int:
        """Reconcile the store with every non-final transfer Alpaca lists; returns the transfers read."""
        listed: dict[str, InstantFunding] = {}
        for status in (IFStatus.PENDING, IFStatus.EXECUTED):
            for transfer in await self.broker.list_transfers(status=status):
                listed[str(transfer.id)] = transfer
        recorded = await self.store.recorded_as(list(listed))
        unchanged = 0
        for transfer_id, transfer in listed.items():
            if recorded.get(transfer_id) == (transfer.status.value, cents(transfer.total_interest)):
                unchanged += 1  # recorded as it is now: nothing to write (the record step would find a duplicate)
                continue
            await self.apply(transfer, source="poller")
        self.metrics.records.labels("poller", "duplicate").inc(unchanged)
        gone = (await self.store.unsettled_ids()) - set(listed)
        for transfer_id in gone:  # unsettled here, final there: read each to learn how it ended
            try:
                transfer = await self.broker.get_transfer(transfer_id)
            except NotFoundError:
                await self._dead("unknown_transfer", f"transfer {transfer_id} vanished", transfer_id)
                continue
            await self.apply(transfer, source="poller")
        await self.dispatch()
        return len(listed) + len(gone)

    async def heal_loop(self, stop: asyncio.Event, trigger: asyncio.Event, interval: float) -> None:
        """Heal on start, whenever ``trigger`` is set (after each reconnect), and every ``interval`` s."""
        trigger.set()
        while not stop.is_set():
            waits = [asyncio.create_task(trigger.wait()), asyncio.create_task(stop.wait())]
            await asyncio.wait(waits, timeout=interval, return_when=asyncio.FIRST_COMPLETED)
            for waiting in waits:
                waiting.cancel()
            trigger.clear()
            if stop.is_set():
                return
            started = time.monotonic()
            try:
                count = await self.heal()
            except LeaseLostError:
                raise
            except RetryableError as exc:
                self.metrics.heal_runs.labels("error").inc()
                self.metrics.rest_errors.labels(type(exc).__name__).inc()
                log.warning("heal_failed", error=str(exc))
                continue
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                self.metrics.heal_runs.labels("error").inc()
                log.warning("heal_failed", error=f"Redis: {type(exc).__name__}: {exc}"[:300])
                continue
            self.metrics.heal_runs.labels("ok").inc()
            log.info("heal_done", transfers=count, seconds=round(time.monotonic() - started, 3))

    # ------------------------------------------------------------------ outbox → RQ

    async def dispatch(self) -> int:
        """Hand every outbox action to RQ (unique job ids); returns how many were newly enqueued."""
        enqueued = 0
        async with self._dispatching:
            while actions := await self.store.outbox(OUTBOX_BATCH):
                for group in jobs_of(actions):
                    fresh = await asyncio.to_thread(enqueue_job, self.rq, group)
                    if fresh:
                        log.info("action_enqueued", job_id=group[0].job_id, kind=group[0].kind, actions=len(group))
                    for action in group:
                        self.metrics.actions.labels(action.kind, "enqueued" if fresh else "duplicate").inc()
                        if fresh:
                            enqueued += 1
                            self.metrics.action_latency.labels(action.kind).observe(_since_recorded(action))
                        await self.store.done(action)
        return enqueued


def _since_recorded(action: Action) -> float:
    """Seconds since the record that decided ``action``: its outbox entry id is the Redis time of that record
    (the same Lua step), in milliseconds; a clock behind Redis's counts as 0."""
    recorded_ms = int(action.stream_id.split("-", 1)[0])
    return max(time.time() - recorded_ms / 1000, 0.0)
