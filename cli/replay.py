"""``settlekeeper replay --stream S --since ID|TIME``: read a stream's history again from that point.

A one-off reader beside the listener: each event is parsed as the listener parses it, and what it names goes
into the store as the listener's would (transfer hints the resolver reads over REST, journal statuses, dead
letters), in batches, through the same atomic ingest step. The stored cursor is never moved, and the
store's de-duplication makes a second replay harmless. A replay ends at the first heartbeat, when the history
is sent and the stream idles; the v2 streams also end at ``until`` = now (the v1 NTA stream takes a date there,
so it has none). A progress line on a terminal gives events/s and an ETA from the events' own times.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from broker.events import SPECS, Stream, parse
from broker.stream import ConnectInfo, Message, Oversized, StreamClosed, open_stream, stream_session
from cli.output import OK, PROBLEM, Out
from cli.records import since_arg
from funding import ids
from funding.records import DeadLetter
from jobs.runtime import JobContext
from store.transfers import TransferStore

BATCH = 500


def since_point(text: str) -> str:
    """``--since``: a ULID, or a date or RFC 3339 date-time (kept as given: it is sent as the stream's own)."""
    if not ids.is_ulid(text):
        since_arg(text)
    return text


REDRAW_SECONDS = 0.25
"""How often the progress line is redrawn at most."""


class Progress:
    """Events read, events/s and an ETA, on one line redrawn at most every :data:`REDRAW_SECONDS` (stderr, a
    terminal only); the last drawing, at the end, shows the whole bar."""

    def __init__(self, start: datetime, end: datetime) -> None:
        self.start, self.end, self.at = start, end, start
        self.began = self.drawn = time.monotonic()
        self.events = 0
        self.live = sys.stderr.isatty()

    def tick(self, at: datetime | None) -> None:
        self.events += 1
        self.at = at or self.at
        if self.live and time.monotonic() - self.drawn >= REDRAW_SECONDS:
            self._draw()

    def _draw(self, finished: bool = False) -> None:
        self.drawn = time.monotonic()
        elapsed = max(self.drawn - self.began, 1e-6)
        span = (self.end - self.start).total_seconds() or 1.0
        done = 1.0 if finished else min(max((self.at - self.start).total_seconds() / span, 0.0), 1.0)
        eta = elapsed * (1 - done) / done if done else 0.0
        bar = "#" * int(done * 30)
        sys.stderr.write(f"\r[{bar:<30}] {self.events} events, {self.events / elapsed:.0f}/s, ETA {eta:.0f} s")
        sys.stderr.flush()

    def close(self) -> None:
        if self.live:
            self._draw(finished=True)
            sys.stderr.write("\n")


class _Reader:
    """What one replay read and handed to the store, in batches."""

    def __init__(self, stream: Stream, store: TransferStore, progress: Progress) -> None:
        self.stream, self.store, self.progress = stream, store, progress
        self.hints: dict[str, None] = {}
        self.journals: list[tuple[str, str, str]] = []
        self.dead: list[DeadLetter] = []
        self.totals = {"events": 0, "hints": 0, "journals": 0, "dead_letters": 0}

    async def consume(self, messages: AsyncIterator[list[Message]]) -> None:
        with contextlib.suppress(StreamClosed):  # the v2 streams end at until
            async for batch in messages:
                for message in batch:
                    item = parse(self.stream, message.data)
                    self.totals["events"] += 1
                    self.progress.tick(item.at)
                    if item.transfer_id:
                        self.hints[item.transfer_id] = None
                    if item.journal:
                        self.journals.append(item.journal)
                    if item.dead is not None:
                        self.dead.append(item.dead)
                if len(self.hints) + len(self.journals) + len(self.dead) >= BATCH:
                    await self.flush()

    async def flush(self) -> None:
        if self.hints or self.journals or self.dead:
            await self.store.ingest(
                self.stream.value, None, list(self.hints), self.dead, self.journals, now=time.time()
            )
            self.totals["hints"] += len(self.hints)
            self.totals["journals"] += len(self.journals)
            self.totals["dead_letters"] += len(self.dead)
            self.hints, self.journals, self.dead = {}, [], []


async def replay(ctx: JobContext, args: argparse.Namespace, out: Out) -> int:
    stream, settings = Stream(args.stream), ctx.settings
    spec, now = SPECS[stream], await ctx.now()
    v1 = stream is Stream.NTA
    params = {spec.cursor_param: args.since} if ids.is_ulid(args.since) else {"since": args.since}
    if not v1 and "since" in params:  # the document: until needs since (never since_id)
        params["until"] = now.astimezone(UTC).isoformat().replace("+00:00", "Z")
    start = ids.ulid_moment(args.since) if ids.is_ulid(args.since) else since_arg(args.since)
    progress = Progress(start, now)
    reader = _Reader(stream, TransferStore(ctx.redis), progress)
    idle = asyncio.Event()

    def comment(text: str) -> None:
        if text == "heartbeat":  # the history is sent: the stream is idle, waiting for live events
            idle.set()

    url = settings.broker_url + settings.stream_path(stream.value)
    async with (
        stream_session(settings.heartbeat_seconds, info := ConnectInfo()) as session,
        open_stream(
            session, info, url, params=params, headers=ctx.broker.auth_header, on_comment=comment, on_oversized=_skip
        ) as messages,
    ):
        tasks = {asyncio.create_task(reader.consume(messages)), asyncio.create_task(idle.wait())}
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            task.result()
    await reader.flush()
    progress.close()
    totals = reader.totals
    if out.json:
        out.data({"stream": stream.value, "since": args.since, **totals})
    else:
        out.line(
            f"replayed {totals['events']} events of {stream.value} since {args.since}: {totals['hints']} transfer "
            f"hints, {totals['journals']} journal statuses, {totals['dead_letters']} dead letters"
        )
    return PROBLEM if totals["dead_letters"] else OK


async def _skip(_: Oversized) -> None:
    return None
