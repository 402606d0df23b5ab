"""structlog set-up: JSON lines, secrets redacted, no locals in tracebacks (config/logging.py)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from pydantic import SecretStr

from config.logging import REDACTED, configure_logging
from config.settings import load_settings

# Built at run time so no source line a traceback could print contains the secret itself.
SECRET = "".join(("zq", "7Xk", "-l0cal-", "s3cr3t"))


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Put structlog and the stdlib root logger back as they were after each test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    access_level = logging.getLogger("aiohttp.access").level
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(access_level)


def configure(log_format: str = "json", level: str = "DEBUG") -> io.StringIO:
    stream = io.StringIO()
    configure_logging(load_settings({"SETTLEKEEPER_LOG_FORMAT": log_format, "SETTLEKEEPER_LOG_LEVEL": level}), stream)
    return stream


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_json_format_writes_one_json_object_per_line() -> None:
    """With log_format json every record is one JSON line with event, level, logger and UTC timestamp."""
    stream = configure()
    structlog.get_logger("settlekeeper.test").info("transfer_seen", transfer_id="t-1", amount=3)
    logging.getLogger("rq.worker").warning("from stdlib %s", "rq")
    first, second = lines(stream)
    assert first["event"] == "transfer_seen"
    assert (first["transfer_id"], first["amount"]) == ("t-1", 3)
    assert (first["level"], first["logger"]) == ("info", "settlekeeper.test")
    assert first["timestamp"].endswith("Z")
    assert (second["event"], second["level"], second["logger"]) == ("from stdlib rq", "warning", "rq.worker")


def test_auto_format_is_json_off_a_tty() -> None:
    """log_format auto renders JSON when the stream is not a TTY (a StringIO)."""
    stream = configure("auto")
    structlog.get_logger().info("hello")
    assert lines(stream)[0]["event"] == "hello"


def test_level_filters_records() -> None:
    """Records below the configured level are dropped."""
    stream = configure(level="WARNING")
    log = structlog.get_logger()
    log.info("quiet")
    log.warning("loud")
    assert [line["event"] for line in lines(stream)] == ["loud"]


def test_contextvars_are_merged() -> None:
    """Context bound with bind_contextvars appears on every line."""
    stream = configure()
    structlog.contextvars.bind_contextvars(stream="activities", event_id="01ABC")
    structlog.get_logger().info("event_handled")
    line = lines(stream)[0]
    assert (line["stream"], line["event_id"]) == ("activities", "01ABC")


@pytest.mark.parametrize(
    "key",
    ["password", "authorization", "Authorization", "webhook_url", "broker_secret", "redis_url", "api_key", "token"],
)
def test_values_under_secret_keys_are_redacted(key: str) -> None:
    """A value logged under a secret-looking key is replaced by the redaction marker."""
    stream = configure()
    structlog.get_logger().info("calling", **{key: SECRET, "account_no": "8100000001"})
    line = lines(stream)[0]
    assert line[key] == REDACTED
    assert line["account_no"] == "8100000001"
    assert SECRET not in stream.getvalue()


def test_secretstr_values_are_redacted_under_any_key() -> None:
    """A SecretStr is redacted even under an innocent key."""
    stream = configure()
    structlog.get_logger().info("loaded", value=SecretStr(SECRET))
    assert lines(stream)[0]["value"] == REDACTED
    assert SECRET not in stream.getvalue()


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        (f"sending Authorization: Basic {SECRET}", "sending Authorization:"),
        (f"Bearer {SECRET} expired", "expired"),
        (f"posting to https://hooks.slack.com/services/T000/B000/{SECRET}", "posting to"),
        (f"redis at redis://default:{SECRET}@cache:6379/0 is down", "cache:6379/0 is down"),
    ],
)
def test_secret_text_is_scrubbed_from_messages_and_values(text: str, kept: str) -> None:
    """Basic/Bearer credentials, Slack webhook URLs and Redis passwords are scrubbed from any text."""
    stream = configure()
    structlog.get_logger().warning(text, detail=text)
    line = lines(stream)[0]
    for value in (line["event"], line["detail"]):
        assert SECRET not in value
        assert REDACTED in value
        assert kept in value


def test_stdlib_records_are_scrubbed() -> None:
    """Libraries logging through the stdlib (aiohttp, redis) get the same scrubbing."""
    stream = configure()
    logging.getLogger("aiohttp.client").error("header was Basic %s", SECRET)
    assert SECRET not in stream.getvalue()
    assert lines(stream)[0]["event"] == f"header was Basic {REDACTED}"


def fail_with_secret_local() -> None:
    """Raise while a local variable holds a secret."""
    password = SECRET
    assert password
    raise RuntimeError("upstream refused the request")


def fail_with_secret_in_message() -> None:
    """Raise an exception whose message carries a Basic credential."""
    header = "Basic " + SECRET
    raise ConnectionError(f"server echoed Authorization: {header}")


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_exception_log_renders_no_locals(log_format: str) -> None:
    """log.exception renders the traceback without local variables, so a secret in a local never leaks."""
    stream = configure(log_format)
    log = structlog.get_logger()
    try:
        fail_with_secret_local()
    except RuntimeError:
        log.exception("job_failed")
    output = stream.getvalue()
    assert "Traceback (most recent call last)" in output
    assert "fail_with_secret_local" in output
    assert "upstream refused the request" in output
    assert SECRET not in output


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_exception_message_with_credentials_is_scrubbed(log_format: str) -> None:
    """A credential inside an exception's message is scrubbed from the rendered traceback."""
    stream = configure(log_format)
    try:
        fail_with_secret_in_message()
    except ConnectionError:
        structlog.get_logger().exception("call_failed")
    output = stream.getvalue()
    assert "server echoed Authorization:" in output
    assert SECRET not in output


def test_stdlib_exception_renders_no_locals() -> None:
    """An exception logged through a stdlib logger is rendered without locals too."""
    stream = configure()
    try:
        fail_with_secret_local()
    except RuntimeError:
        logging.getLogger("rq.worker").exception("rq job failed")
    line = lines(stream)[0]
    assert "upstream refused the request" in line["exception"]
    assert SECRET not in stream.getvalue()


def test_aiohttp_access_log_is_quietened() -> None:
    """aiohttp.access is raised to WARNING so request lines do not flood the log."""
    configure(level="DEBUG")
    assert logging.getLogger("aiohttp.access").level == logging.WARNING
    assert logging.getLogger().level == logging.DEBUG
