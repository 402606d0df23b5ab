"""The one settings object read from SETTLEKEEPER_* (config/settings.py)."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from config.settings import (
    DEFAULT_BROKER_URL,
    DEFAULT_HEARTBEAT_SECONDS,
    DEFAULT_HTTP_PORT,
    Settings,
    load_settings,
)
from funding.errors import ConfigError, PermanentError

SECRET = "hunter2-Sup3r-s3cret"


def test_defaults_from_an_empty_environment() -> None:
    """With nothing set, every setting takes its documented default."""
    settings = load_settings({})
    assert settings.redis_url is None
    assert settings.broker_url == DEFAULT_BROKER_URL == "http://127.0.0.1:8765"
    assert settings.broker_key.get_secret_value() == "sandbox-key"
    assert settings.broker_secret.get_secret_value() == "sandbox-secret"
    assert settings.http_port == DEFAULT_HTTP_PORT == 9108
    assert (settings.log_level, settings.log_format) == ("INFO", "auto")
    assert (settings.sandbox_host, settings.sandbox_port) == ("127.0.0.1", 8765)
    assert settings.sandbox_key.get_secret_value() == "sandbox-key"
    assert settings.sandbox_secret.get_secret_value() == "sandbox-secret"
    assert settings.sandbox_heartbeat_seconds == DEFAULT_HEARTBEAT_SECONDS == 15.0


def test_values_are_read_and_normalised() -> None:
    """Each SETTLEKEEPER_* variable sets its field; URLs lose a trailing slash, levels are upper-cased."""
    settings = load_settings(
        {
            "SETTLEKEEPER_REDIS_URL": "redis://:pw@localhost:6380/2",
            "SETTLEKEEPER_BROKER_URL": "https://broker-api.sandbox.alpaca.markets/",
            "SETTLEKEEPER_HTTP_PORT": "9200",
            "SETTLEKEEPER_LOG_LEVEL": "debug",
            "SETTLEKEEPER_LOG_FORMAT": "json",
            "SETTLEKEEPER_SANDBOX_PORT": "0",
            "SETTLEKEEPER_SANDBOX_HEARTBEAT_SECONDS": "0.5",
            "UNRELATED": "ignored",
        }
    )
    assert settings.redis_url is not None
    assert settings.redis_url.get_secret_value() == "redis://:pw@localhost:6380/2"
    assert settings.broker_url == "https://broker-api.sandbox.alpaca.markets"
    assert (settings.http_port, settings.sandbox_port) == (9200, 0)
    assert (settings.log_level, settings.log_format) == ("DEBUG", "json")
    assert settings.sandbox_heartbeat_seconds == 0.5


@pytest.mark.parametrize(
    ("variable", "value", "hint"),
    [
        ("SETTLEKEEPER_HTTP_PORT", "abc", "integer"),
        ("SETTLEKEEPER_HTTP_PORT", "70000", "65535"),
        ("SETTLEKEEPER_SANDBOX_PORT", "-1", "0"),
        ("SETTLEKEEPER_BROKER_URL", "ftp://example.com", "http"),
        ("SETTLEKEEPER_LOG_LEVEL", "LOUD", "DEBUG"),
        ("SETTLEKEEPER_LOG_FORMAT", "xml", "json"),
        ("SETTLEKEEPER_SANDBOX_HEARTBEAT_SECONDS", "0", "greater than 0"),
        ("SETTLEKEEPER_SANDBOX_HEARTBEAT_SECONDS", "soon", "number"),
    ],
)
def test_bad_value_names_the_variable(variable: str, value: str, hint: str) -> None:
    """A bad value raises ConfigError naming the SETTLEKEEPER_* variable and what was expected."""
    with pytest.raises(ConfigError) as caught:
        load_settings({variable: value})
    assert variable in str(caught.value)
    assert hint in str(caught.value)
    assert isinstance(caught.value, PermanentError)


def test_every_bad_variable_is_named() -> None:
    """Two bad values are both reported in one message."""
    with pytest.raises(ConfigError) as caught:
        load_settings({"SETTLEKEEPER_HTTP_PORT": "x", "SETTLEKEEPER_LOG_FORMAT": "y"})
    assert "SETTLEKEEPER_HTTP_PORT" in str(caught.value)
    assert "SETTLEKEEPER_LOG_FORMAT" in str(caught.value)


@pytest.mark.parametrize(
    "variable",
    ["SETTLEKEEPER_HTTP_PORT", "SETTLEKEEPER_BROKER_URL", "SETTLEKEEPER_LOG_LEVEL", "SETTLEKEEPER_SANDBOX_PORT"],
)
def test_secret_given_to_a_bad_field_is_not_echoed(variable: str) -> None:
    """A secret pasted into the wrong variable never appears in the error message."""
    with pytest.raises(ConfigError) as caught:
        load_settings({variable: f"redis://:{SECRET}@cache:6379"})
    assert variable in str(caught.value)
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(caught.value)


def test_secret_override_of_wrong_type_is_not_echoed() -> None:
    """A non-string secret given as an override fails without echoing the value."""
    with pytest.raises(ConfigError) as caught:
        load_settings({}, broker_secret=["not", SECRET])
    assert "SETTLEKEEPER_BROKER_SECRET" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_empty_mapping_ignores_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """load_settings({}) reads only the mapping given, never os.environ."""
    monkeypatch.setenv("SETTLEKEEPER_HTTP_PORT", "1234")
    monkeypatch.setenv("SETTLEKEEPER_LOG_FORMAT", "not-a-format")
    settings = load_settings({})
    assert settings.http_port == DEFAULT_HTTP_PORT
    assert settings.log_format == "auto"


def test_none_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """load_settings() with no mapping reads SETTLEKEEPER_* from the process environment."""
    monkeypatch.setenv("SETTLEKEEPER_HTTP_PORT", "1234")
    monkeypatch.setenv("SETTLEKEEPER_BROKER_SECRET", SECRET)
    settings = load_settings()
    assert settings.http_port == 1234
    assert settings.broker_secret.get_secret_value() == SECRET
    monkeypatch.setenv("SETTLEKEEPER_HTTP_PORT", "abc")
    with pytest.raises(ConfigError, match="SETTLEKEEPER_HTTP_PORT"):
        load_settings()


def test_overrides_win_over_the_mapping() -> None:
    """Keyword overrides replace values from the mapping."""
    settings = load_settings({"SETTLEKEEPER_HTTP_PORT": "1"}, http_port=2)
    assert settings.http_port == 2


def test_secrets_are_masked_in_repr_and_str() -> None:
    """SecretStr fields never show their value in repr/str of the field or of the settings."""
    settings = load_settings(
        {"SETTLEKEEPER_BROKER_SECRET": SECRET, "SETTLEKEEPER_REDIS_URL": f"redis://:{SECRET}@cache:6379/0"}
    )
    assert isinstance(settings.broker_secret, SecretStr)
    for text in (repr(settings.broker_secret), str(settings.broker_secret), repr(settings), str(settings)):
        assert SECRET not in text
    assert "**********" in repr(settings.broker_secret)


def test_settings_are_frozen() -> None:
    """The settings object cannot be changed after start-up."""
    settings = load_settings({})
    assert isinstance(settings, Settings)
    with pytest.raises(ValueError, match="frozen"):
        settings.http_port = 1  # type: ignore[misc]
