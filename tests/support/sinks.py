"""Local Slack and PagerDuty: capture servers on loopback that record each request and answer from a script."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

SLACK_PATH = "/services/T0SECRET/B0SECRET/xoxWebhookSecret42"
"""The path of the Slack capture's webhook URL: in Slack's, the path is the credential."""
ROUTING_KEY = "R0secretRoutingKey0123456789abcd"

Response = tuple[int, str, dict[str, str]]


@dataclass
class Received:
    at: float
    body: dict[str, Any]


@dataclass
class Capture:
    """A local Slack or PagerDuty: records each request, answers from ``script`` first, then ``default``."""

    url: str
    default: Response
    script: list[Response] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)

    def answer(self, *responses: Response) -> None:
        self.script.extend(responses)

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [r.body for r in self.received]


@dataclass
class Sinks:
    slack: Capture
    pagerduty: Capture


async def _start(runners: list[web.AppRunner], path: str, default: Response) -> Capture:
    capture = Capture("", default)

    async def handle(request: web.Request) -> web.Response:
        capture.received.append(Received(time.monotonic(), await request.json()))
        status, text, headers = capture.script.pop(0) if capture.script else capture.default
        return web.Response(status=status, text=text, headers=headers)

    app = web.Application()
    app.router.add_post(path, handle)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    runners.append(runner)
    capture.url = f"http://127.0.0.1:{runner.addresses[0][1]}{path}"
    return capture


@pytest.fixture
async def sinks() -> AsyncIterator[Sinks]:
    """Slack (200 ``ok``) and PagerDuty (202) capture servers on loopback."""
    runners: list[web.AppRunner] = []
    slack = await _start(runners, SLACK_PATH, (200, "ok", {}))
    pagerduty = await _start(runners, "/v2/enqueue", (202, '{"status": "success"}', {}))
    yield Sinks(slack, pagerduty)
    for runner in runners:
        await runner.cleanup()
