"""The forms of SETTLEKEEPER_REDIS_URL (config/redis_urls.py): Sentinel URLs parsed, bad ones named, no secret."""

from __future__ import annotations

import pytest

from config.redis_urls import SentinelURL, parse_sentinel, redis_url_problem

SECRET = "pw-not-in-any-message"


def test_a_sentinel_url_names_every_sentinel_the_master_and_the_database() -> None:
    """Hosts with and without ports (26379 by default), the master's user and password, db and sentinel auth."""
    url = f"redis+sentinel://app:{SECRET}@s1:26380,s2,10.0.0.3:26381/main/2?sentinel_password=sp"
    assert parse_sentinel(url) == SentinelURL(
        sentinels=(("s1", 26380), ("s2", 26379), ("10.0.0.3", 26381)),
        master="main",
        db=2,
        username="app",
        password=SECRET,
        sentinel_password="sp",
    )


def test_rediss_sentinel_speaks_tls_with_the_ssl_options() -> None:
    """rediss+sentinel: TLS, with ssl_ca_certs kept for the master and the sentinels; db 0 by default."""
    found = parse_sentinel(f"rediss+sentinel://:{SECRET}@s1/main?ssl_ca_certs=/etc/ca.pem")
    assert (found.tls, found.ssl, found.db, found.username) == (True, {"ssl_ca_certs": "/etc/ca.pem"}, 0, None)
    assert found.describe() == "rediss+sentinel://s1:26379/main/0"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        (f"redis+sentinel://:{SECRET}@/main", "no sentinel host"),
        (f"redis+sentinel://:{SECRET}@s1", "the path must be /<master name>[/db]"),
        (f"redis+sentinel://:{SECRET}@s1/main/x", "the database (the path after the master name) must be a number"),
        (f"redis+sentinel://:{SECRET}@s1:0/main", "a sentinel port is not a number from 1 to 65535"),
        (f"redis+sentinel://:{SECRET}@s1/main?ssl_ca_certs=/ca.pem", "ssl_* options need rediss+sentinel"),
        (f"redis+sentinel://:{SECRET}@s1/main?sentinel_pasword={SECRET}", "unknown options ['sentinel_pasword']"),
    ],
)
def test_a_bad_sentinel_url_is_named_without_repeating_it(url: str, why: str) -> None:
    """Each mistake gets its own words; no password or option value of the URL is repeated."""
    problem = redis_url_problem(url)
    assert problem is not None
    assert why in problem
    assert SECRET not in problem


def test_the_plain_forms_still_pass() -> None:
    """redis, rediss with a CA file, unix with a db: no problem."""
    for url in ("redis://:p@h:6379/1", "rediss://u:p@h:6380/0?ssl_ca_certs=/ca.pem", "unix:///run/redis.sock?db=3"):
        assert redis_url_problem(url) is None
