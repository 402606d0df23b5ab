"""Guardrails on every money movement: mode (off / dry-run / on), caps, and the kill switch.

The kill switch is a Redis key (``sk:kill``); :meth:`Guardrails.before_call` reads it immediately
before every money call, so an operator's ``SET sk:kill "reason"`` stops the next call of every job.
The daily cap is a reservation in integer cents taken atomically before the call.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import redis.asyncio as aioredis

from config.settings import Settings
from funding.errors import KillSwitchOn
from funding.money import CENT
from store import keys
from store.codec import text

_RESERVE = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used + tonumber(ARGV[1]) > tonumber(ARGV[2]) then
  return -1
end
redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], 7 * 86400)
return used + tonumber(ARGV[1])
"""


async def kill_switch_state(client: aioredis.Redis) -> dict[str, str] | None:
    """The kill switch as ``settlekeeper status`` shows it: its reason, who set it and since when (``unknown``
    when it was set straight in Redis), or None when it is off."""
    reason = await client.get(keys.KILL_SWITCH)
    if reason is None:
        return None
    meta = {text(k): text(v) for k, v in (await client.hgetall(keys.KILL_SWITCH_META)).items()}
    return {"reason": text(reason), "by": meta.get("by", "unknown"), "since": meta.get("since", "unknown")}


async def set_kill_switch(client: aioredis.Redis, reason: str, by: str, since: str) -> None:
    """Pause every money movement: the next money call of every job stops (:meth:`Guardrails.before_call`)."""
    async with client.pipeline(transaction=True) as pipe:
        pipe.set(keys.KILL_SWITCH, reason)
        pipe.delete(keys.KILL_SWITCH_META)
        pipe.hset(keys.KILL_SWITCH_META, mapping={"by": by, "since": since})
        await pipe.execute()


async def clear_kill_switch(client: aioredis.Redis) -> bool:
    """Resume; True when it was set."""
    removed = await client.delete(keys.KILL_SWITCH, keys.KILL_SWITCH_META)
    return bool(removed)


@dataclass(frozen=True)
class Verdict:
    """What the guardrails allow for one movement."""

    allowed: bool
    dry_run: bool
    reason: str


class Guardrails:
    def __init__(self, settings: Settings, client: aioredis.Redis) -> None:
        self.settings = settings
        self.redis = client
        self._reserve = client.register_script(_RESERVE)

    async def kill_switch(self) -> str | None:
        """The kill switch's reason, or None when it is off."""
        value = await self.redis.get(keys.KILL_SWITCH)
        return None if value is None else text(value)

    async def check(self, action: str, amount: Decimal, *, day: date) -> Verdict:
        """Mode and caps for ``action`` (``settle``, ``fund``, ``cover``) of ``amount`` on business ``day``."""
        mode = self.settings.mode(action)
        if mode == "off":
            return Verdict(False, False, f"{action} mode is off")
        if (reason := await self.kill_switch()) is not None:
            return Verdict(False, False, f"kill switch is on: {reason}")
        cap = {
            "settle": self.settings.max_settlement_amount,
            "fund": self.settings.max_daily_amount,
            "cover": self.settings.max_cover_per_account,
        }[action]
        if amount > cap:
            return Verdict(False, False, f"{action} of {amount} exceeds the cap of {cap}")
        if mode == "dry-run":
            return Verdict(True, True, f"{action} mode is dry-run")
        if action in ("fund", "cover"):  # money leaving RF counts against the daily cap
            cents = int(amount / CENT)
            cap_cents = int(self.settings.max_daily_amount / CENT)
            if int(await self._reserve(keys=[keys.moved_today(day)], args=[cents, cap_cents])) < 0:
                return Verdict(False, False, f"daily cap of {self.settings.max_daily_amount} would be exceeded")
        return Verdict(True, False, "allowed")

    async def fund_budget(self, day: date) -> Decimal:
        """How much may still leave RF today for SI (0 when funding is off or the kill switch is on).

        In dry-run the full budget is reported, so the plan (and its audit) shows what would happen.
        """
        if await self.kill_switch() is not None:
            return Decimal(0)
        return await self.cap_budget(day)

    async def cap_budget(self, day: date) -> Decimal:
        """What the mode and the daily cap still let leave RF today, whatever the kill switch says (the alert
        ladder names the kill switch as a cause of its own, not as RF being short)."""
        if self.settings.mode("fund") == "off":
            return Decimal(0)
        used = int(await self.redis.get(keys.moved_today(day)) or 0)
        return max(self.settings.max_daily_amount - used * CENT, Decimal(0))

    async def release(self, amount: Decimal, *, day: date) -> None:
        """Give back a reservation whose movement did not happen."""
        await self.redis.decrby(keys.moved_today(day), int(amount / CENT))

    async def count_moved(self, amount: Decimal, *, day: date) -> None:
        """Count a movement found at Alpaca that Redis had forgotten against the daily cap (its reservation may
        have been lost with it; in doubt the cap is counted twice, erring towards stopping, never past the cap)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incrby(keys.moved_today(day), int(amount / CENT))
            pipe.expire(keys.moved_today(day), 7 * 86400)
            await pipe.execute()

    async def before_call(self) -> None:
        """Raise :class:`KillSwitchOn` if the kill switch was set since the plan was made."""
        if (reason := await self.kill_switch()) is not None:
            raise KillSwitchOn(reason)
