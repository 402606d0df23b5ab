"""structlog set-up: JSON off a TTY, console on a TTY, secrets redacted, no locals in tracebacks."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from decimal import Decimal
from typing import Any, TextIO

import structlog
from pydantic import SecretStr

from config.settings import Settings

REDACTED = "[redacted]"
SECRET_KEYS = re.compile(
    r"(authorization|password|secret|token|routing_key|webhook|api_key|redis_url|credential)", re.IGNORECASE
)
SECRET_TEXT = (
    re.compile(r"https://hooks\.slack\.com/services/[A-Za-z0-9/_-]+"),
    re.compile(r"(redis|rediss|valkey)://[^:@/\s]*:[^@/\s]+@"),
)
CREDENTIAL_TEXT = re.compile(r"\b(Basic|Bearer)(\s+)([A-Za-z0-9+/=._~:-]+)")
"""``Basic <base64>`` or ``Bearer <token>`` in any text; redacted unless the word after it is an ordinary word
(``HTTP Basic with the sandbox key`` stays as written)."""
ORDINARY_WORD = re.compile(r"[A-Za-z][a-z]*")


def _credential(match: re.Match[str]) -> str:
    if ORDINARY_WORD.fullmatch(match.group(3)):
        return match.group(0)
    return f"{match.group(1)}{match.group(2)}{REDACTED}"


def _scrub(text: str) -> str:
    for pattern in SECRET_TEXT:
        text = pattern.sub(REDACTED, text)
    return CREDENTIAL_TEXT.sub(_credential, text)


def redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Mask values under secret-looking keys, secret-looking text, and every ``SecretStr``."""
    for key, value in list(event_dict.items()):
        if isinstance(value, SecretStr) or (SECRET_KEYS.search(key) and value is not None):
            event_dict[key] = REDACTED
        elif isinstance(value, str):
            event_dict[key] = _scrub(value)
        elif isinstance(value, Decimal):
            event_dict[key] = str(value)
    return event_dict


def configure_logging(settings: Settings, stream: TextIO | None = None) -> None:
    """Configure structlog and the stdlib root logger (RQ, aiohttp, redis log through it) once."""
    stream = stream or sys.stdout
    as_json = settings.log_format == "json" or (settings.log_format == "auto" and not stream.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact,
    ]
    renderer: Any
    if as_json:
        renderer = structlog.processors.JSONRenderer()
        shared.append(structlog.processors.format_exc_info)
    else:
        renderer = structlog.dev.ConsoleRenderer(
            exception_formatter=structlog.dev.plain_traceback, colors=stream.isatty()
        )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, _scrub_rendered(renderer)],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("aiohttp_sse_client").setLevel(logging.CRITICAL)  # broker/stream.py reports its errors


def _scrub_rendered(renderer: Any) -> Any:
    """Render, then scrub the text once more (exception messages are rendered late)."""

    def render(logger: Any, name: str, event_dict: MutableMapping[str, Any]) -> str:
        return _scrub(str(renderer(logger, name, event_dict)))

    return render
