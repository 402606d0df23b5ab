"""One stream's connection loop: connect from the stored cursor, read, commit in batches, reconnect.

Reading and committing are two tasks joined by a queue: the reader parses messages as fast as they
come; the committer takes whatever is queued (up to :data:`BATCH`) and records it with the cursor in
one atomic step (:meth:`store.transfers.TransferStore.ingest`). A crash loses only uncommitted events,
which the next connection replays from the cursor; replays are harmless (hints are idempotent).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import aiohttp
import redis
import structlog
from prometheus_client import Counter

from broker.events import SPECS, Parsed, Stream, parse
from broker.stream import (
    MAX_LINE_BYTES,
    ConnectInfo,
    Oversized,
    Redirected,
    StreamClosed,
    open_stream,
    redirect_path,
    stream_session,
)
from config.settings import Settings
from funding import ids
from funding.alerts import Alert, Severity
from funding.calendar import to_et
from funding.errors import AuthenticationError, LeaseLostError, RetryableError, Rewind, SettlekeeperError
from funding.records import DeadLetter
from store.alert_state import raise_alert
from store.transfers import TransferStore
from worker.listener_metrics import ListenerMetrics

log = structlog.get_logger(__name__)

MAX_EVENT_ID_AHEAD_SECONDS = 3600
"""A ULID carries its emission time; one dated further than this ahead of the broker's clock is refused as a
cursor (it would make every later event look like a replay). Clocks agree to seconds; an hour is generous."""
HINTS_GAUGE_SECONDS = 0.5
"""The pending-hints gauge is refreshed after a commit at most this often (a scrape is every 15 s or so; a
ZCARD per batch would cost the hot path a Redis round trip); the resolver refreshes it after every round."""
BATCH = 4096
"""Events committed per Redis round trip at most; under load batches fill, when idle each read goes alone."""
_END = Parsed("", "end")


class StreamReader:
    def __init__(
        self,
        stream: Stream,
        settings: Settings,
        store: TransferStore,
        metrics: ListenerMetrics,
        *,
        token: Callable[[], str],
        on_connect: Callable[[], None],
        on_hints: Callable[[], None],
        now: Callable[[], datetime],
        sync_clock: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.spec = SPECS[stream]
        self.settings = settings
        self.path = settings.stream_path(stream.value)
        """Where the stream is read; a safe redirect moves it (logged once, counted)."""
        self.store = store
        self.metrics = metrics
        self._token = token
        self._on_connect = on_connect
        self._on_hints = on_hints
        self._now = now
        self._sync_clock = sync_clock or _nothing
        """Reads the broker's clock again now (the sandbox's); with wall time, nothing to do."""
        self._horizon_tick = -1
        self._horizon = ""
        self._hints_counted = 0.0
        self.connected = False
        self._stopping = False
        self.last_alive = 0.0
        self._cursor: str | None = None
        self._queue: asyncio.Queue[list[Parsed]] = asyncio.Queue(maxsize=16)
        """Parsed events, a list per read of the stream (at most about a megabyte of events each)."""
        self._counters: dict[str, Counter] = {}
        self._oddities_seen: set[str] = set()

    @property
    def name(self) -> str:
        return self.spec.name.value

    async def run(self, stop: asyncio.Event) -> None:
        """Read until ``stop`` is set; raises :class:`LeaseLostError` if the lease is lost."""
        committer = asyncio.create_task(self._commit_loop())
        try:
            await self._connect_loop(stop, committer)
        finally:
            self._stopping = True
            await self._queue.put([_END])
            await committer  # finish the records in hand; their cursor is persisted with them

    async def _connect_loop(self, stop: asyncio.Event, committer: asyncio.Task[None]) -> None:
        attempt = 0
        async with stream_session(self.settings.heartbeat_seconds, info := ConnectInfo()) as session:
            while not stop.is_set():
                if committer.done():
                    committer.result()  # re-raise LeaseLostError or a bug
                reason, healthy = await self._connect_once(session, info, stop, committer)
                if stop.is_set():
                    return
                self.metrics.reconnects.labels(self.name, reason).inc()
                attempt = 0 if healthy or reason == "rewind" else attempt + 1
                if reason in ("rewind", "redirected"):
                    continue
                delay = random.uniform(
                    0, min(self.settings.backoff_cap_seconds, self.settings.backoff_base_seconds * 2**attempt)
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)

    async def _connect_once(
        self, session: object, info: ConnectInfo, stop: asyncio.Event, committer: asyncio.Task[None]
    ) -> tuple[str, bool]:
        """One connection; returns (why it ended, whether it was up long enough to reset the backoff)."""
        self._cursor = await self._stored_cursor()
        params = self._params()
        started = time.monotonic()
        stop_wait = asyncio.create_task(stop.wait())
        try:
            async with open_stream(
                session,  # type: ignore[arg-type]
                info,
                self.settings.broker_url + self.path,
                params=params,
                headers={"Authorization": _basic(self.settings)},
                on_comment=self._comment,
                on_oversized=self._oversized,
            ) as messages:
                self.connected = True
                self.metrics.connected.labels(self.name).set(1)
                self.last_alive = time.time()
                self._on_connect()
                log.info("stream_connected", stream=self.name, cursor=self._cursor, params=sorted(params))
                reader = asyncio.create_task(self._read(messages))
                done, _ = await asyncio.wait({reader, stop_wait, committer}, return_when=asyncio.FIRST_COMPLETED)
                if reader not in done:
                    reader.cancel()
                    with contextlib.suppress(asyncio.CancelledError, SettlekeeperError, Rewind):
                        await reader
                    return "stopped", False
                reader.result()
                return "closed", time.monotonic() - started >= self.settings.healthy_reset_seconds
        except Rewind:
            self.metrics.rewinds.labels(self.name).inc()
            await self._queue.join()  # everything read before the drop is committed: the cursor is exact
            log.warning("stream_rewind", stream=self.name, cursor=await self.store.cursor(self.name))
            return "rewind", True
        except Redirected as exc:
            return self._redirected(exc.location)
        except StreamClosed as exc:
            log.info("stream_closed", stream=self.name, detail=str(exc))
            return "closed", time.monotonic() - started >= self.settings.healthy_reset_seconds
        except RetryableError as exc:
            log.warning("stream_connect_failed", stream=self.name, error=str(exc), kind=type(exc).__name__)
            return type(exc).__name__, False
        except AuthenticationError:
            raise  # nothing can be read with these credentials: the listener handles it (slow retry, alert)
        except SettlekeeperError as exc:
            log.error("stream_refused", stream=self.name, error=str(exc))
            return "refused", False
        finally:
            stop_wait.cancel()
            self.connected = False
            self.metrics.connected.labels(self.name).set(0)

    def _oddity(self, oddity: str, event_id: str) -> None:
        """Count input looser than the document; say so once per kind (the metric counts every one)."""
        self.metrics.oddities.labels(self.name, oddity).inc()
        if oddity not in self._oddities_seen:
            self._oddities_seen.add(oddity)
            log.warning("stream_oddity", stream=self.name, oddity=oddity, event_id=event_id, read="as far as it goes")

    def _redirected(self, location: str) -> tuple[str, bool]:
        """Follow a redirect to an events path of the same host (Alpaca moves ``/v2beta1`` streams to ``/v2``);
        refuse any other."""
        target = redirect_path(self.settings.broker_url, location)
        if target is None:
            self.metrics.oddities.labels(self.name, "redirect_refused").inc()
            log.error("stream_redirect_refused", stream=self.name, path=self.path, location=location[:200])
            return "refused", False
        self.metrics.oddities.labels(self.name, "redirected").inc()
        log.warning(
            "stream_redirected",
            stream=self.name,
            path=self.path,
            to=target,
            hint=f"set SETTLEKEEPER_STREAM_PATH_{self.name.upper()}={target}",
        )
        self.path = target  # logged once: the next connect goes there directly
        return "redirected", True

    async def _stored_cursor(self) -> str | None:
        """The stored cursor; one that is not a ULID (written before ids were checked) is not resumed from."""
        cursor = await self.store.cursor(self.name)
        if cursor is not None and not ids.is_ulid(cursor):
            log.error("stream_cursor_invalid", stream=self.name, cursor=cursor[:40], resume="from history")
            self.metrics.malformed.labels(self.name, "invalid_cursor").inc()
            return None
        return cursor

    def _params(self) -> dict[str, str]:
        if self._cursor:
            return {self.spec.cursor_param: self._cursor}
        day = (self._now() - timedelta(days=self.settings.stream_history_days)).astimezone(UTC).date()
        if self.spec.name is Stream.NTA:  # v1: a date; v2: a date-time (the document's formats for ``since``)
            return {"since": day.isoformat()}
        return {"since": f"{day.isoformat()}T00:00:00Z"}

    def _comment(self, text: str) -> None:
        self.last_alive = time.time()
        self.metrics.last_message.labels(self.name).set(self.last_alive)
        if text == "heartbeat":
            kind = "heartbeat"
        elif "dropped" in text:
            kind = "dropped"
        elif "internal server error" in text:
            kind = "internal_error"
        else:
            kind = "other"
        self.metrics.comments.labels(self.name, kind).inc()
        if kind == "dropped":
            log.warning("stream_dropped_messages", stream=self.name, comment=text)
            raise Rewind(text)
        if kind == "internal_error":
            log.warning("stream_internal_error", stream=self.name)

    async def _oversized(self, line: Oversized) -> None:
        """An event line too long to read: dead-lettered (once: its hash is in it) in its place in the order."""
        head = line.head.decode("utf-8", "replace")
        detail = f"an event line of {line.length} bytes (over {MAX_LINE_BYTES}) was skipped"
        letter = DeadLetter(self.name, "oversized", detail, f"{head}… ({line.length} bytes, sha256 {line.sha256})")
        await self._queue.put([Parsed("", "invalid", dead=letter)])

    def _too_far_ahead(self, event_id: str) -> bool:
        """True when the ULID's time is past the broker's clock plus the allowance.

        The hot path, per event: its 10-character time part against the horizon's, recomputed once a (real)
        second. The raw characters suffice there: Crockford's aliases and lower case only ever make the
        canonical form smaller, so a raw time part not past the horizon is not past it canonically either."""
        tick = int(time.monotonic())
        if tick != self._horizon_tick:
            self._horizon_tick = tick
            self._horizon = ids.ulid_time_part(int(self._now().timestamp() + MAX_EVENT_ID_AHEAD_SECONDS) * 1000)
        return event_id[:10] > self._horizon and ids.ulid_order(event_id[:10]) > self._horizon

    async def _future(self, parsed: Parsed, data: str) -> Parsed:
        """An event whose id is dated far ahead of the broker's clock cannot be a cursor: a dead letter (the
        clock is read again first, as the sandbox's may just have jumped)."""
        await self._sync_clock()
        self._horizon_tick = -1  # against the clock just read
        if not self._too_far_ahead(parsed.event_id):
            return parsed
        detail = f"event id {parsed.event_id} is dated more than {MAX_EVENT_ID_AHEAD_SECONDS:.0f} s ahead"
        return Parsed("", "invalid", dead=DeadLetter(self.name, "future_id", detail, data))

    async def _read(self, messages: object) -> None:
        kinds: dict[str, int] = {}
        async for batch in messages:  # type: ignore[attr-defined]
            parsed_batch = []
            for message in batch:
                parsed = parse(self.spec.name, message.data)
                if parsed.event_id and self._too_far_ahead(parsed.event_id):
                    parsed = await self._future(parsed, message.data)
                kinds[parsed.kind] = kinds.get(parsed.kind, 0) + 1
                parsed_batch.append(parsed)
            self.last_alive = time.time()
            for kind, count in kinds.items():
                counter = self._counters.get(kind)
                if counter is None:
                    counter = self._counters[kind] = self.metrics.events.labels(self.name, kind)
                counter.inc(count)
            kinds.clear()
            await self._queue.put(parsed_batch)

    async def _commit_loop(self) -> None:
        while True:
            batch = await self._queue.get()
            taken = 1
            while len(batch) < BATCH and not self._queue.empty():
                batch.extend(self._queue.get_nowait())  # the reader keeps none of the lists it queued
                taken += 1
            ended = batch[-1] is _END  # the last thing ever queued, alone
            try:
                if ended:
                    batch.pop()
                for start in range(0, len(batch), BATCH):
                    await self._commit(batch[start : start + BATCH])
            finally:
                for _ in range(taken):
                    self._queue.task_done()
            if ended:
                return

    async def _commit(self, batch: list[Parsed]) -> None:
        cursor = self._cursor
        order = ids.ulid_order(cursor) if cursor is not None else ""
        hints: dict[str, None] = {}
        dates: dict[str, str] = {}
        dead = []
        dead_ids: dict[DeadLetter, str] = {}
        journals = []
        newest_at: datetime | None = None
        for item in batch:
            if item.at is not None:
                newest_at = item.at if newest_at is None else max(newest_at, item.at)
            if item.event_id:  # a checked ULID (parse() dead-letters any other): the cursor only moves forward
                if (item_order := ids.ulid_order(item.event_id)) <= order:
                    self.metrics.replayed.labels(self.name).inc()
                else:
                    cursor, order = item.event_id, item_order
            if item.dead is not None:
                dead.append(item.dead)
                dead_ids[item.dead] = item.event_id
            for oddity in item.oddities:
                self._oddity(oddity, item.event_id)
            if item.transfer_id:
                hints[item.transfer_id] = None
                if item.system_date:
                    dates[item.transfer_id] = item.system_date
            if item.journal:
                journals.append(item.journal)
        while True:
            try:
                kept = await self.store.ingest(
                    self.name,
                    cursor,
                    list(hints),
                    dead,
                    journals,
                    hint_dates=dates,
                    token=self._token(),
                    now=time.time(),
                )
                break
            except LeaseLostError:
                raise
            except (redis.ConnectionError, redis.TimeoutError) as exc:  # Redis blip: retry, never skip
                if self._stopping:  # shutting down without Redis: the next start replays from the cursor
                    log.warning("commit_abandoned", stream=self.name, events=len(batch), error=type(exc).__name__)
                    return
                log.warning("commit_retry", stream=self.name, error=type(exc).__name__)
                await asyncio.sleep(0.2)
        self._cursor = cursor
        for letter in kept:  # a replayed bad event was kept, counted and logged the first time only
            self.metrics.malformed.labels(self.name, letter.reason).inc()
            log.warning(
                "event_dead_lettered",
                stream=self.name,
                event_id=dead_ids[letter],
                reason=letter.reason,
                detail=letter.detail,
            )
        if kept:
            await self._alert_dead_letters(kept)
        self.metrics.cursor_timestamp.labels(self.name).set(time.time())
        if newest_at is not None:
            self.metrics.lag.labels(self.name).set(max((self._now() - newest_at).total_seconds(), 0.0))
        if hints:
            if time.monotonic() - self._hints_counted >= HINTS_GAUGE_SECONDS:  # as committed, not as resolved
                self._hints_counted = time.monotonic()
                self.metrics.hints.set(await self.store.hint_count())
            self._on_hints()

    async def _alert_dead_letters(self, kept: list[DeadLetter]) -> None:
        """One warning per stream and ET day that events could not be read (raised once; the scheduler's
        tick delivers it). What they named is healed by the REST poller; the dead letters say what they were."""
        day = to_et(self._now()).date()
        reasons = ", ".join(sorted({letter.reason for letter in kept}))
        alert = Alert(
            "dead_letters",
            Severity.WARNING,
            f"dead-letters-{self.name}-{day}",
            f"{self.name} stream: events could not be read ({reasons}) and were dead-lettered on {day}; "
            "the stream moved past them and the REST poller heals what they named",
            {"stream": self.name, "reasons": reasons, "first_detail": kept[0].detail[:300]},
        )
        try:
            await raise_alert(self.store.redis, alert)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("dead_letter_alert_failed", stream=self.name, error=type(exc).__name__)


def _basic(settings: Settings) -> str:
    return aiohttp.encode_basic_auth(settings.broker_key.get_secret_value(), settings.broker_secret.get_secret_value())


async def _nothing() -> None:
    return None
