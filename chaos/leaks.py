"""Where a chaos run looks for its secrets afterwards: every log line (exceptions included), the metrics pages,
every Redis key and value (RQ's compressed job data opened), the audit stream, every Slack and PagerDuty
payload. The run's secrets are distinctive values made for it, so any hit is a leak."""

from __future__ import annotations

import asyncio
import json
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import redis

from store.clients import sync_client


def _found(secrets: Iterable[str], text: str, where: str) -> Iterator[str]:
    for secret in secrets:
        if secret in text:
            yield f"{where}: {secret[:4]}… found"


def in_logs(secrets: list[str], log_dir: Path) -> list[str]:
    hits: list[str] = []
    for path in sorted(log_dir.rglob("*.log")):
        if path.parent.name == "redis":
            continue  # Redis' own log: it never sees a secret but in AUTH, which it does not log
        hits += _found(secrets, path.read_text(errors="replace"), path.name)
    return hits


def in_redis(secrets: list[str], url: str) -> list[str]:
    """Every key and every value of every type; a value that is zlib data (RQ's job payloads) opened too."""
    client = sync_client(url)
    hits: list[str] = []
    try:
        for key in client.scan_iter(count=1000):
            name = key.decode(errors="replace")
            hits += _found(secrets, name, f"redis key {name}")
            for value in _values(client, key):
                hits += _found(secrets, _readable(value), f"redis {name}")
    finally:
        client.close()
    return hits


def _values(client: redis.Redis, key: bytes) -> list[object]:
    """Every member of the value at ``key`` (redis-py answers bytes here: the client does not decode)."""
    found: Any = client.type(key)
    kind = found.decode() if isinstance(found, bytes) else str(found)
    if kind == "string":
        return [client.get(key)]
    if kind == "hash":
        found = client.hgetall(key)
        return [part for pair in found.items() for part in pair]
    if kind == "list":
        found = client.lrange(key, 0, -1)
        return list(found)
    if kind == "set":
        found = client.smembers(key)
        return list(found)
    if kind == "zset":
        found = client.zrange(key, 0, -1)
        return list(found)
    if kind == "stream":
        found = client.xrange(key)
        return [part for _, fields in found for pair in fields.items() for part in pair]
    return []


def _readable(value: object) -> str:
    if not isinstance(value, bytes):
        return str(value)
    try:
        return zlib.decompress(value).decode(errors="replace")
    except zlib.error:
        return value.decode(errors="replace")


async def in_pages(secrets: list[str], urls: list[str]) -> list[str]:
    hits: list[str] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        for url in urls:
            async with http.get(url) as resp:
                hits += _found(secrets, await resp.text(), url.rsplit(":", 1)[-1])
    return hits


async def everywhere(
    secrets: list[str], log_dir: Path, url: str, page_hits: list[str], payloads: dict[str, list[dict[str, Any]]]
) -> list[str]:
    """Every place a secret was found (none, in a sound run), after the processes stopped (``page_hits``: what
    :func:`in_pages` found while they ran). A PagerDuty event's ``routing_key`` is left out: the Events API
    needs the key there, and only there."""
    hits = page_hits + in_logs(secrets, log_dir) + await asyncio.to_thread(in_redis, secrets, url)
    for sink, sent in payloads.items():
        bodies = [{k: v for k, v in body.items() if not (sink == "pagerduty" and k == "routing_key")} for body in sent]
        hits += list(_found(secrets, json.dumps(bodies), f"{sink} payloads"))
    return hits
