"""The sandbox aiohttp application: auth, errors, rate-limit headers, faults, and the clock ticker."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from config.settings import Settings
from funding.calendar import TradingCalendar
from sandbox import activity_history, admin, api, event_streams, markets
from sandbox.clock_control import SandboxClock
from sandbox.engine import Engine
from sandbox.http import LOGGED_BODY_BYTES, RATE_HEADERS, RUNTIME, Runtime, error_response, runtime
from sandbox.state import SandboxError, SeedConfig

TICK_SECONDS = 0.05
"""How often (real time) a running clock fires due rules without waiting for a request."""

MAX_BODY_BYTES = 64 * 1024 * 1024
"""A settlement may list 50,000 transfers with full transmitter_info (~20 MB); aiohttp's default is 1 MiB."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _authorized(request: web.Request, key: str, secret: str) -> bool:
    header = request.headers.get("Authorization", "")
    if header.startswith("Basic "):
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
    else:
        user = request.headers.get("APCA-API-KEY-ID", "")
        password = request.headers.get("APCA-API-SECRET-KEY", "")
    return hmac.compare_digest(user.encode(), key.encode()) and hmac.compare_digest(password.encode(), secret.encode())


@web.middleware
async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    rt = runtime(request)
    now = time.time()
    rt.rate.hit(now)
    limit = rt.engine.seed.rate_limit_per_minute
    headers = {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(max(limit - rt.rate.used, 0)),
        "X-RateLimit-Reset": str(int(rt.rate.started) + 60),
    }
    request[RATE_HEADERS] = headers
    if not request.path.startswith("/sandbox/"):
        size = request.content_length or 0
        body = (await request.text()) if request.can_read_body and 0 < size <= LOGGED_BODY_BYTES else ""
        rt.requests.append((request.method, request.raw_path.split("?", 1)[0], request.query_string, body))
    response: web.StreamResponse
    if not _authorized(
        request, rt.settings.sandbox_key.get_secret_value(), rt.settings.sandbox_secret.get_secret_value()
    ):
        response = error_response(401, "unauthorized: HTTP Basic with the sandbox key and secret is required")
    elif rt.engine.seed.rate_limit_enforced and rt.rate.used > limit:
        response = error_response(429, "rate limit exceeded")
    elif (fault := rt.faults.take_http(request.path, "http_error", request.method)) is not None:
        response = error_response(fault.status, f"injected fault: HTTP {fault.status}")
        if fault.reset_in_seconds is not None:
            headers["X-RateLimit-Reset"] = str(math.ceil(now + fault.reset_in_seconds))
    else:
        if (slow := rt.faults.take_http(request.path, "slow", request.method)) is not None:
            await asyncio.sleep(slow.delay_seconds)
        try:
            response = await handler(request)
        except SandboxError as refusal:
            response = error_response(refusal.status, refusal.message, refusal.code)
        except web.HTTPMove as moved:
            response = web.Response(status=moved.status, headers={"Location": str(moved.location)})
        except web.HTTPException as http:
            response = error_response(http.status, http.reason)
    if not response.prepared:
        response.headers.update(headers)
    return response


async def _ticker(app: web.Application) -> AsyncIterator[None]:
    async def tick() -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            rt = app[RUNTIME]
            if not rt.clock.state().frozen:
                rt.engine.sync()

    task = asyncio.create_task(tick())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def create_app(
    settings: Settings,
    seed: SeedConfig | None = None,
    *,
    clock: SandboxClock | None = None,
    calendar: TradingCalendar | None = None,
) -> web.Application:
    """Build the sandbox app, seeded with ``seed`` (defaults when None)."""
    clock = clock or SandboxClock()
    calendar = calendar or TradingCalendar()
    app = web.Application(middlewares=[middleware], client_max_size=MAX_BODY_BYTES)
    app[RUNTIME] = Runtime(
        settings=settings,
        clock=clock,
        calendar=calendar,
        engine=Engine(seed or SeedConfig(), clock, calendar),
        heartbeat_seconds=settings.sandbox_heartbeat_seconds,
    )
    activity_history.add_routes(app)  # before /v1/accounts/{account_id}
    api.add_routes(app)
    markets.add_routes(app)
    event_streams.add_routes(app)
    admin.add_routes(app)
    app.cleanup_ctx.append(_ticker)
    return app
