"""One stream's connection loop: connect from the stored cursor, read, commit in batches, reconnect.

Reading and committing are two tasks joined by a queue: the reader parses messages as fast as they
come; the committer takes whatever is queued (up to :data:`BATCH`) and records it with the cursor in
one atomic step (:meth:`funding.store.TransferStore.ingest`). A crash loses only uncommitted events,
which the next connection replays from the cursor; replays are harmless (hints are idempotent).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import aiohttp
import redis
import structlog
from prometheus_client import Counter

from config.settings import Settings
from funding.errors import RetryableError, SettlekeeperError
from funding.store import DeadLetter, LeaseLostError, TransferStore
from worker.events import SPECS, Parsed, Stream, parse
from worker.metrics import ListenerMetrics
from worker.sse import ConnectInfo, StreamClosed, open_stream, stream_session

log = structlog.get_logger(__name__)

BATCH = 512
"""Events committed per Redis round trip at most; under load batches fill, when idle each event goes alone."""
_END = Parsed("", "end")


class Rewind(Exception):
    """The server dropped messages: stop reading, commit what was read, reconnect from the cursor."""


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
    ) -> None:
        self.spec = SPECS[stream]
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self._token = token
        self._on_connect = on_connect
        self._on_hints = on_hints
        self._now = now
        self.connected = False
        self._stopping = False
        self.last_alive = 0.0
        self._cursor: str | None = None
        self._queue: asyncio.Queue[Parsed] = asyncio.Queue(maxsize=BATCH * 8)
        self._counters: dict[str, Counter] = {}

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
            await self._queue.put(_END)
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
                if reason == "rewind":
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
        self._cursor = await self.store.cursor(self.name)
        params = self._params()
        started = time.monotonic()
        stop_wait = asyncio.create_task(stop.wait())
        try:
            async with open_stream(
                session,  # type: ignore[arg-type]
                info,
                self.settings.broker_url + self.spec.path,
                params=params,
                headers={"Authorization": _basic(self.settings)},
                on_comment=self._comment,
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
        except StreamClosed as exc:
            log.info("stream_closed", stream=self.name, detail=str(exc))
            return "closed", time.monotonic() - started >= self.settings.healthy_reset_seconds
        except RetryableError as exc:
            log.warning("stream_connect_failed", stream=self.name, error=str(exc), kind=type(exc).__name__)
            return type(exc).__name__, False
        except SettlekeeperError as exc:
            log.error("stream_refused", stream=self.name, error=str(exc))
            return "refused", False
        finally:
            stop_wait.cancel()
            self.connected = False
            self.metrics.connected.labels(self.name).set(0)

    def _params(self) -> dict[str, str]:
        if self._cursor:
            return {self.spec.cursor_param: self._cursor}
        since = self._now() - timedelta(days=self.settings.stream_history_days)
        return {"since": since.astimezone(UTC).date().isoformat()}

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

    async def _read(self, messages: object) -> None:
        async for message in messages:  # type: ignore[attr-defined]
            parsed = parse(self.spec.name, message.data)
            self.last_alive = time.time()
            counter = self._counters.get(parsed.kind)
            if counter is None:
                counter = self._counters[parsed.kind] = self.metrics.events.labels(self.name, parsed.kind)
            counter.inc()
            await self._queue.put(parsed)

    async def _commit_loop(self) -> None:
        while True:
            first = await self._queue.get()
            batch = [first]
            while len(batch) < BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                if any(item is not _END for item in batch):
                    await self._commit([item for item in batch if item is not _END])
            finally:
                for _ in batch:
                    self._queue.task_done()
            if any(item is _END for item in batch):
                return

    async def _commit(self, batch: list[Parsed]) -> None:
        cursor = self._cursor
        hints: dict[str, None] = {}
        dates: dict[str, str] = {}
        dead = []
        dead_ids: dict[DeadLetter, str] = {}
        journals = []
        newest_at: datetime | None = None
        for item in batch:
            if item.at is not None:
                newest_at = item.at if newest_at is None else max(newest_at, item.at)
            if item.event_id and cursor is not None and item.event_id <= cursor:
                self.metrics.replayed.labels(self.name).inc()
            if item.event_id and (cursor is None or item.event_id > cursor):
                cursor = item.event_id
            if item.dead is not None:
                dead.append(item.dead)
                dead_ids[item.dead] = item.event_id
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
        self.metrics.cursor_timestamp.labels(self.name).set(time.time())
        if newest_at is not None:
            self.metrics.lag.labels(self.name).set(max((self._now() - newest_at).total_seconds(), 0.0))
        if hints:
            self._on_hints()


def _basic(settings: Settings) -> str:
    return aiohttp.encode_basic_auth(settings.broker_key.get_secret_value(), settings.broker_secret.get_secret_value())
