"""Slack and PagerDuty stand-ins for a chaos run: each records what it receives and answers as the real one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Sinks:
    slack_url: str = ""
    pagerduty_url: str = ""
    slack: list[dict[str, Any]] = field(default_factory=list)
    pagerduty: list[dict[str, Any]] = field(default_factory=list)


@asynccontextmanager
async def capture(webhook_path: str) -> AsyncIterator[Sinks]:
    """Both stand-ins on a free port; Slack's webhook URL ends in ``webhook_path`` (in Slack's, the path is
    the credential)."""
    sinks = Sinks()

    async def slack(request: web.Request) -> web.Response:
        sinks.slack.append(await request.json())
        return web.Response(text="ok")

    async def pagerduty(request: web.Request) -> web.Response:
        sinks.pagerduty.append(await request.json())
        return web.json_response({"status": "success"}, status=202)

    app = web.Application()
    app.router.add_post(f"/services/{webhook_path}", slack)
    app.router.add_post("/v2/enqueue", pagerduty)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    sinks.slack_url, sinks.pagerduty_url = f"{base}/services/{webhook_path}", f"{base}/v2/enqueue"
    try:
        yield sinks
    finally:
        await runner.cleanup()
