"""``settlekeeper dead-letters``: what the listener could not read (``sk:deadletter``), and what to do with it.

``retry ID|--all`` reads each one again: a REST dead letter's transfer id, or a stream event parsed anew (a
fixed parser, a transfer Alpaca now knows). What it names becomes a hint the resolver reads over REST (the
truth, within a second), and the entry leaves the stream, audited; one still unreadable stays and says why.
``drop ID --reason`` removes one for good. The audit keeps its content and who dropped it and why.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from broker.events import Stream, parse
from cli.control import operator
from cli.output import OK, PROBLEM, Out
from funding import ids
from jobs.runtime import JobContext
from store import keys
from store.codec import text, text_map
from store.transfers import TransferStore


async def _entries(ctx: JobContext, stream: str | None) -> list[dict[str, Any]]:
    found = []
    for entry_id, raw in await ctx.redis.xrange(keys.DEAD_LETTERS, min="-", max="+") or []:
        letter = json.loads(text_map(raw or {}).get("entry", "{}"))
        if stream is None or letter.get("stream") == stream:
            found.append({"id": text(entry_id or ""), **letter})
    return found


async def dead_letters(ctx: JobContext, args: argparse.Namespace, out: Out) -> int:
    if args.action == "retry":
        return await _retry(ctx, args, out)
    if args.action == "drop":
        return await _drop(ctx, args, out)
    found = await _entries(ctx, args.stream)
    if out.json:
        out.data(found)
    else:
        out.line(f"{len(found)} dead letters" + (f" on {args.stream}" if args.stream else ""))
        out.table(
            ["id", "stream", "reason", "detail"], [[e["id"], e["stream"], e["reason"], e["detail"][:60]] for e in found]
        )
    return PROBLEM if found else OK


def _named(letter: dict[str, Any]) -> tuple[str | None, str | None]:
    """(the transfer id it names, why it still cannot be read): from a REST letter's id or the event parsed anew."""
    if letter.get("stream") == "rest":
        raw = str(letter.get("raw", ""))
        return (raw, None) if ids.is_uuid(raw) else (None, f"{raw[:40]!r} is not a transfer id")
    try:
        parsed = parse(Stream(str(letter.get("stream"))), str(letter.get("raw", "")))
    except ValueError:
        return None, f"unknown stream {letter.get('stream')!r}"
    if parsed.dead is not None and parsed.transfer_id is None:
        return None, f"{parsed.dead.reason}: {parsed.dead.detail}"
    return parsed.transfer_id, None


async def _retry(ctx: JobContext, args: argparse.Namespace, out: Out) -> int:
    chosen = [e for e in await _entries(ctx, args.stream) if args.all or e["id"] == args.id]
    if not chosen:
        out.line(f"no dead letter {args.id} to retry" if args.id else "no dead letters to retry")
        return PROBLEM
    store, by = TransferStore(ctx.redis), args.by or operator()
    results = []
    for letter in chosen:
        transfer_id, still = _named(letter)
        results.append({"id": letter["id"], "transfer_id": transfer_id, "retried": still is None, "why": still})
    retried = [r for r in results if r["retried"]]
    hints = list(dict.fromkeys(r["transfer_id"] for r in retried if r["transfer_id"]))
    if hints:  # hints first, in one step: the resolver reads each transfer over REST
        await store.ingest("cli", None, hints, [], now=0.0)
    if retried:
        await ctx.redis.xdel(keys.DEAD_LETTERS, *(r["id"] for r in retried))
    for row in retried:
        await ctx.ledger.note(
            "dead_letter_retried", "dead_letter", row["id"], by=by, transfer_id=row["transfer_id"] or ""
        )
    if out.json:
        out.data(results)
    else:
        for row in results:
            if row["retried"]:
                what = (
                    f"transfer {row['transfer_id']} is read again over REST" if row["transfer_id"] else "nothing to do"
                )
                out.line(f"{row['id']}: retried: {what}", "green")
            else:
                out.line(f"{row['id']}: still cannot be read ({row['why']}); kept", "red")
    return OK if all(r["retried"] for r in results) else PROBLEM


async def _drop(ctx: JobContext, args: argparse.Namespace, out: Out) -> int:
    letter = next((e for e in await _entries(ctx, None) if e["id"] == args.id), None)
    if letter is None:
        out.line(f"no dead letter {args.id}")
        return PROBLEM
    by = args.by or operator()
    await ctx.redis.xdel(keys.DEAD_LETTERS, args.id)
    await ctx.ledger.note("dead_letter_dropped", "dead_letter", args.id, by=by, reason=args.reason, letter=letter)
    if out.json:
        out.data({"id": args.id, "dropped": True, "by": by})
    else:
        out.line(f"{args.id}: dropped (kept in the audit, with your reason)")
    return OK
