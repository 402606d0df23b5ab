"""Where Redis comes from: the configured URL or an embedded server (store/clients.py)."""

from __future__ import annotations

import socket

import pytest
import redis

from config.settings import load_settings
from funding.errors import RedisUnavailableError, RetryableError
from store.clients import connect, describe, redis_url

PASSWORD = "".join(("pw", "-9f3K", "-never-logged"))


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_embedded_server_starts_answers_and_stops() -> None:
    """With SETTLEKEEPER_REDIS_URL unset an embedded server answers PING and is gone after the block."""
    with redis_url(load_settings({})) as url:
        assert url.startswith("redis://127.0.0.1:")
        client = connect(url)
        try:
            assert client.ping() is True
            client.set("settlekeeper:probe", "1")
            assert client.get("settlekeeper:probe") == b"1"
        finally:
            client.close()
    with pytest.raises(RedisUnavailableError):
        connect(url)


def test_configured_url_is_passed_through_untouched() -> None:
    """A configured URL is yielded as is and no embedded server is started."""
    configured = f"redis://:{PASSWORD}@10.0.0.7:6380/3"
    with redis_url(load_settings({"SETTLEKEEPER_REDIS_URL": configured})) as url:
        assert url == configured


def test_connect_to_a_dead_port_is_retryable_and_hides_the_password() -> None:
    """connect() to a port nobody listens on raises RedisUnavailableError without the URL's password."""
    url = f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0"
    with pytest.raises(RedisUnavailableError) as caught:
        connect(url)
    assert isinstance(caught.value, RetryableError)
    assert "PING" in str(caught.value)
    assert PASSWORD not in str(caught.value)
    assert PASSWORD not in repr(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_connect_returns_a_working_client(redis_client: redis.Redis) -> None:
    """connect() on the session's Redis returns a client that already answered PING."""
    assert redis_client.ping() is True
    assert redis_client.dbsize() == 0


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"rediss://settlekeeper:{PASSWORD}@cache.internal:6380/2", "rediss://settlekeeper@cache.internal:6380/2"),
        (f"redis://:{PASSWORD}@10.0.0.7", "redis://10.0.0.7:6379/0"),
        ("unix:///run/redis.sock", "unix:///run/redis.sock db 0"),
        ("unix:///run/redis.sock?db=3", "unix:///run/redis.sock db 3"),
    ],
)
def test_describe_says_where_without_the_password(url: str, shown: str) -> None:
    """describe() names scheme, user, host, port and db for logs (a socket's path is not its db), never the
    password."""
    assert describe(url) == shown
