"""Fuzz config/settings.py ``load_settings`` with arbitrary SETTLEKEEPER_* environments, and config/redis_urls.py.

Every secret a mapping carries (the Redis URL's password and sentinel password, the broker key and secret, the Slack
webhook URL, the PagerDuty routing key, the sandbox's key and secret) is marked: a ``¤`` between every two of its
characters and around it, a character no other value holds. Any fragment of two characters or more of a secret
that reaches a message therefore shows a ``¤``. Properties: ``load_settings`` returns settings or raises
``ConfigError``, nothing else; no ``¤`` in the error or in the settings' repr; every number it accepts is finite;
``redis_url_problem`` never raises or echoes a password, and a URL it accepts is one redis-py can read.
"""

from __future__ import annotations

import math
import string
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import pytest
import redis.connection
from hypothesis import given
from hypothesis import strategies as st

from config.redis_urls import is_sentinel, redis_url_problem
from config.settings import ENV_PREFIX, Settings, load_settings
from funding.errors import ConfigError
from store.clients import describe

MARK = "¤"
SECRET_FIELDS = (
    "broker_key",
    "broker_secret",
    "slack_webhook_url",
    "pagerduty_routing_key",
    "sandbox_key",
    "sandbox_secret",
)
PLAIN = st.text(alphabet=st.characters(codec="utf-8", exclude_characters=MARK), max_size=20)
"""Text of any kind but the mark (and lone surrogates, which no environment holds)."""
URL_CHARS = string.ascii_letters + string.digits + "?#@:/%=&,;+ ~."


def marked(chars: str = string.printable) -> st.SearchStrategy[str]:
    """A secret: ``¤a¤b¤c¤``, its characters drawn from ``chars`` (URL delimiters among them)."""
    return st.text(alphabet=chars, min_size=1, max_size=12).map(lambda text: MARK + MARK.join(text) + MARK)


@st.composite
def redis_urls(draw: st.DrawFn) -> str:
    """Redis URLs of every documented form and many broken ones, the password (and sentinel password) marked and
    written raw or percent-encoded."""
    scheme = draw(st.sampled_from(["redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel", "http", "REDIS"]))
    password = draw(marked(URL_CHARS))
    password = quote(password, safe="") if draw(st.booleans()) else password
    user = draw(st.sampled_from(["", "default", "u"]))
    userinfo = draw(st.sampled_from([f"{user}:{password}@", f"{user}@", "", f":{password}@"]))
    hosts = draw(st.sampled_from(["localhost", "127.0.0.1:6379", "[::1]:6379", "h1:26379,h2", "", "h:0", "h:99999"]))
    path = draw(st.sampled_from(["", "/", "/0", "/notadb", "/mymaster", "/mymaster/1", "/mymaster/x", "/run/r.sock"]))
    query = draw(st.sampled_from(["", "?db=1", "?db=x", "?ssl_ca_certs=/ca.pem", "?foo=bar", "?sentinel_password="]))
    if query == "?sentinel_password=":
        query += draw(marked(string.ascii_letters + string.digits))
    url = f"{scheme}://{userinfo}{hosts}{path}{query}"
    if draw(st.integers(0, 9)) == 0:  # damaged anywhere
        at = draw(st.integers(0, len(url)))
        url = url[:at] + draw(st.sampled_from(["[", "]", "%", "\x00", " ", "://", "?", "#", "@@", "²"])) + url[at:]
    return url


VALUES: dict[str, st.SearchStrategy[str]] = {
    "redis_url": redis_urls(),
    "broker_url": st.sampled_from(["http://127.0.0.1:8765", "https://broker-api.sandbox.alpaca.markets", "ftp://x"]),
    "slack_webhook_url": marked().map(lambda s: "https://hooks.slack.com/services/" + s) | marked() | st.just(" "),
    "pagerduty_routing_key": marked() | st.just(""),
    "alert_routes": st.sampled_from(
        ['{"slack": ["info"]}', '{"slack": [{}]}', '{"slack": [[]]}', '{"pagerduty": "critical"}', "[" * 10_000, "{"]
    ),
    "transmitter_template": st.sampled_from(['{"originator_city": "x"}', "[]", "[" * 10_000, '{"a": 1e999999999}']),
    "transmitter_overrides": st.sampled_from(["{}", '{"7536050SI": {}}', "{" * 10_000, "null"]),
    "streams": st.sampled_from(["activities", "journals,nta", " , ", "activities,trades", ""]),
    "clock": st.sampled_from(["auto", "wall", "broker", "Wall"]),
    "log_level": st.sampled_from(["info", "DEBUG", "verbose"]),
    "settle_mode": st.sampled_from(["off", "dry-run", "on", "yes", ""]),
    "limit_warning_ratio": st.sampled_from(["0.8", "1", "0", "1.5", "NaN", "0.99"]),
    "limit_critical_ratio": st.sampled_from(["0.95", "0.5", "1", "Infinity"]),
}
"""Per setting, values near what it takes (the others: by their type, see :func:`near_values`)."""
NUMBERS = st.sampled_from(["inf", "1", "1e400", "15", "nan", "0.5", "0", "-1", "-inf", "Infinity", "1_000", "9" * 30])
"""Numbers in every spelling pydantic reads (the non-finite ones early: Hypothesis draws early entries more often)."""
BY_TYPE: dict[object, st.SearchStrategy[str]] = {
    float: NUMBERS,
    Decimal: NUMBERS,
    int: st.sampled_from(["1", "15", "0", "65535", "-1", "9" * 30, "1.5", "inf"]),
    bool: st.sampled_from(["true", "false", "1", "0", "yes", "maybe"]),
}
CLOCK_TIMES = st.sampled_from(["12:00", "09:30", "24:00", "9:30", "12:60"])


def near_values(name: str) -> st.SearchStrategy[str]:
    """Values of the kind setting ``name`` takes, mostly valid (so that one bad value decides the outcome)."""
    if name in VALUES:
        return VALUES[name]
    if name in SECRET_FIELDS:
        return marked()
    info = Settings.model_fields[name]
    if any(getattr(m, "pattern", None) for m in info.metadata):
        return CLOCK_TIMES
    if name.endswith("_mode"):
        return VALUES["settle_mode"]
    return BY_TYPE.get(info.annotation, PLAIN)


@st.composite
def environments(draw: st.DrawFn) -> tuple[dict[str, str], list[str]]:
    """(a SETTLEKEEPER_* mapping of a few settings, the secret values in it)."""
    names = draw(st.lists(st.sampled_from(sorted(Settings.model_fields)), unique=True, max_size=5))
    environ: dict[str, str] = {}
    for name in names:
        value = draw(PLAIN) if draw(st.integers(0, 4)) == 0 else draw(near_values(name))
        key = ENV_PREFIX + name.upper()
        environ[key.lower() if draw(st.integers(0, 9)) == 0 else key] = value
    if draw(st.integers(0, 9)) == 0:
        environ[ENV_PREFIX + draw(st.text(string.ascii_uppercase + "_", max_size=12))] = draw(PLAIN)
    return environ, [value for key, value in environ.items() if MARK in value]


def finite_numbers(settings: Settings) -> None:
    for name in Settings.model_fields:
        value: Any = getattr(settings, name)
        if isinstance(value, float):
            assert math.isfinite(value), f"{name} = {value}"
        if hasattr(value, "is_finite"):
            assert value.is_finite(), f"{name} = {value}"


@given(environments())
def test_settings_load_or_fail_with_config_error_that_shows_no_secret(case: tuple[dict[str, str], list[str]]) -> None:
    """Any SETTLEKEEPER_* mapping loads (every number finite) or raises ConfigError; neither shows a secret."""
    environ, _ = case
    try:
        settings = load_settings(environ)
    except ConfigError as exc:
        message = str(exc)
    else:
        message = repr(settings)
        finite_numbers(settings)
    assert MARK not in message, message


@given(redis_urls() | PLAIN)
def test_redis_url_problem_never_raises_never_echoes_a_password_and_what_it_accepts_works(url: str) -> None:
    """redis_url_problem returns None or words without the password; redis-py reads a URL it accepts, and the
    description logs print of it shows no password."""
    problem = redis_url_problem(url)
    if problem is not None:
        assert MARK not in problem, problem
        return
    assert MARK not in describe(url)
    if not is_sentinel(url):
        redis.connection.parse_url(url)  # type: ignore[no-untyped-call]


# ---------------------------------------------------------------------- defects the targets found, pinned


@pytest.mark.parametrize("value", ["[" * 10_000, '{"slack": [{}]}', '{"slack": [[]]}'])
def test_regression_alert_routes_that_break_the_validator_are_a_config_error(value: str) -> None:
    """SETTLEKEEPER_ALERT_ROUTES nested past the recursion limit raised RecursionError, and a list of objects
    TypeError (unhashable), out of load_settings; now each is a ConfigError naming the variable."""
    with pytest.raises(ConfigError, match="SETTLEKEEPER_ALERT_ROUTES"):
        load_settings({"SETTLEKEEPER_ALERT_ROUTES": value})


@pytest.mark.parametrize("name", ["TRANSMITTER_TEMPLATE", "TRANSMITTER_OVERRIDES"])
def test_regression_a_json_setting_nested_too_deep_is_a_config_error(name: str) -> None:
    """A transmitter setting of 10,000 brackets raised RecursionError out of load_settings; now a ConfigError."""
    with pytest.raises(ConfigError, match=ENV_PREFIX + name):
        load_settings({ENV_PREFIX + name: "[" * 10_000})


@pytest.mark.parametrize(
    "name", ["HEARTBEAT_SECONDS", "POLL_SECONDS", "LEASE_TTL_SECONDS", "SANDBOX_HEARTBEAT_SECONDS"]
)
@pytest.mark.parametrize("value", ["inf", "Infinity", "1e400"])
def test_regression_an_infinite_number_of_seconds_is_a_config_error(name: str, value: str) -> None:
    """SETTLEKEEPER_POLL_SECONDS=inf loaded (inf > 0), to hang a job's sleep or overflow a Redis TTL later; now
    every seconds setting must be finite."""
    with pytest.raises(ConfigError, match=ENV_PREFIX + name):
        load_settings({ENV_PREFIX + name: value})


@pytest.mark.parametrize("url", ["\x00redis://:secret@localhost", " redis://localhost", "REDIS://localhost/0"])
def test_regression_a_redis_url_redis_py_refuses_is_a_config_error(url: str) -> None:
    """``\\x00redis://…`` and ``REDIS://…`` passed redis_url_problem (urlsplit drops leading control characters and
    lower-cases the scheme) though redis-py refuses them at the first connect; now load_settings refuses them."""
    with pytest.raises(ValueError, match="schemes"):
        redis.connection.parse_url(url)  # type: ignore[no-untyped-call]
    with pytest.raises(ConfigError, match="SETTLEKEEPER_REDIS_URL") as raised:
        load_settings({"SETTLEKEEPER_REDIS_URL": url})
    assert "secret" not in str(raised.value)


@pytest.mark.parametrize(
    "url",
    [
        "redis://:¤@¤?¤@localhost",
        "redis://:pa?ss@localhost:6379/0",
        "rediss://u:p/w@h/0",
        "redis+sentinel://u:26379/m@h/0",
    ],
)
def test_regression_a_password_with_an_unescaped_delimiter_is_a_config_error(url: str) -> None:
    """``redis://:¤@¤?¤@localhost`` was accepted: the ``?`` in the raw password ended the host early, so the host was
    a piece of the password, and the start-up log's description printed it (``redis://¤:6379/0``); now an ``@``
    after the host is refused, asking to percent-encode the user and password."""
    with pytest.raises(ConfigError, match="percent-encode") as raised:
        load_settings({"SETTLEKEEPER_REDIS_URL": url})
    assert MARK not in str(raised.value)
    assert "pa?ss" not in str(raised.value)
    assert redis_url_problem(url.replace("?", "%3F").replace("p/w", "p%2Fw").replace("26379/m@", "26379%2Fm@")) is None
