"""A running sandbox and what tests steer it with; the Monday every test day starts from."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import aiohttp
from aiohttp import web

from funding.calendar import ET

MONDAY_10AM = datetime(2026, 11, 23, 10, 0, tzinfo=ET)
"""Default sandbox time in tests: Monday of Thanksgiving week 2026, 10:00 ET, clock frozen."""


@dataclass
class Sandbox:
    """A running sandbox and an authenticated HTTP session to it."""

    base_url: str
    http: aiohttp.ClientSession
    app: web.Application

    async def call(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        """Send a request; return (status, parsed JSON body or text or None)."""
        async with self.http.request(method, self.base_url + path, json=body, **kw) as resp:
            text = await resp.text()
            if not text:
                return resp.status, None
            try:
                return resp.status, await resp.json(content_type=None)
            except ValueError:
                return resp.status, text

    async def ok(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        """Send a request that must succeed (2xx); return its JSON body."""
        status, payload = await self.call(method, path, body, **kw)
        assert 200 <= status < 300, (status, payload)
        return payload

    async def set_clock(self, moment: datetime) -> None:
        await self.ok("POST", "/sandbox/clock", {"set": moment.isoformat()})

    async def advance(self, seconds: float) -> None:
        await self.ok("POST", "/sandbox/clock", {"advance_seconds": seconds})

    async def account_id(self, account_no: str) -> str:
        rows = await self.ok("GET", "/v1/accounts", params={"query": account_no})
        return str(next(r["id"] for r in rows if r["account_number"] == account_no))

    async def trade_account(self, account_no: str) -> dict[str, Any]:
        return dict(await self.ok("GET", f"/v1/trading/accounts/{await self.account_id(account_no)}/account"))

    async def cash(self, account_no: str) -> Decimal:
        return Decimal((await self.trade_account(account_no))["cash"])

    async def wire(self, account_no: str, amount: str) -> None:
        """An incoming wire credited at once (a real one lands 08:00–08:30 ET of a banking day)."""
        await self.ok("POST", "/sandbox/wires", {"account_no": account_no, "amount": amount, "immediate": True})

    async def create_transfer(self, account_no: str, amount: str, **headers: str) -> dict[str, Any]:
        body = {"account_no": account_no, "source_account_no": "7536050SI", "amount": amount}
        return dict(await self.ok("POST", "/v1/instant_funding", body, headers=headers))


SandboxFactory = Callable[..., Awaitable[Sandbox]]
