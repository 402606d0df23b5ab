"""What every sandbox route shares: the runtime it serves from, request parsing, error answers."""

from __future__ import annotations

import json
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from config.settings import Settings
from funding.calendar import TradingCalendar
from funding.money import loads_exact
from sandbox.clock_control import SandboxClock
from sandbox.engine import Engine
from sandbox.faults import FaultBoard
from sandbox.state import SandboxError, SeedConfig

REQUEST_LOG_SIZE = 100_000
"""Requests remembered for ``GET /sandbox/requests`` (the oldest are forgotten first)."""
LOGGED_BODY_BYTES = 65536
"""A request body longer than this is logged as "" (a 50,000-transfer settlement is megabytes)."""


@dataclass
class RateWindow:
    """A per-minute request window reported in X-RateLimit-* headers (enforced only if configured)."""

    started: float = 0.0
    used: int = 0

    def hit(self, now: float) -> None:
        if now - self.started >= 60:
            self.started = math.floor(now)
            self.used = 0
        self.used += 1


@dataclass
class Runtime:
    """Everything the handlers share; ``engine`` is replaced by ``POST /sandbox/reset``."""

    settings: Settings
    clock: SandboxClock
    calendar: TradingCalendar
    engine: Engine
    faults: FaultBoard = field(default_factory=FaultBoard)
    rate: RateWindow = field(default_factory=RateWindow)
    requests: deque[tuple[str, str, str, str]] = field(default_factory=lambda: deque(maxlen=REQUEST_LOG_SIZE))
    """(method, path, query string, body) of the latest Broker API requests (``GET /sandbox/requests``): what a
    test asserts a client did, and did not, ask for; a body is kept up to :data:`LOGGED_BODY_BYTES`."""
    heartbeat_seconds: float = 15.0

    def reset(self, seed: SeedConfig) -> Engine:
        self.engine = Engine(seed, self.clock, self.calendar)
        self.faults.clear()
        return self.engine


RUNTIME = web.AppKey("runtime", Runtime)
RATE_HEADERS = web.RequestKey("rate_headers", dict[str, str])
"""Request key of the X-RateLimit-* headers, for handlers that prepare their own (streaming) response."""


def runtime(request: web.Request) -> Runtime:
    return request.app[RUNTIME]


def engine(request: web.Request) -> Engine:
    """The current engine, with every rule due by now already fired."""
    current = request.app[RUNTIME].engine
    current.sync()
    return current


def error_response(status: int, message: str, code: int | None = None) -> web.Response:
    return web.json_response({"code": code if code is not None else status * 100000, "message": message}, status=status)


async def read_json(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object; numbers become Decimals, never floats."""
    raw = await request.read()
    try:
        body = loads_exact(raw or b"{}")
    except ValueError:
        raise SandboxError(400, "request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise SandboxError(400, "request body must be a JSON object")
    return body


def fingerprint(body: dict[str, Any]) -> str:
    return json.dumps(body, sort_keys=True, default=str, separators=(",", ":"))


def idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 0 < len(key) <= 128:
        raise SandboxError(400, "Idempotency-Key must be 1 to 128 characters")
    return key
