"""Account number → account UUID: the one cache every process uses (``sk:account_ids``).

Instant-funding endpoints name accounts by number; journals and trading endpoints by UUID
(docs/broker-api.md "Account numbers and ids"). A number is looked up once with the ``find`` it is given
(the Broker API's ``GET /v1/accounts?query=``) and then read from Redis; ids never change.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import redis.asyncio as aioredis

from funding.errors import NotFoundError
from funding.models import Account
from store import keys
from store.codec import text

Find = Callable[[str], Awaitable[Account]]
"""Looks an account up by number (raises :class:`~funding.errors.NotFoundError` when there is none)."""


class AccountIds:
    def __init__(self, client: aioredis.Redis, find: Find) -> None:
        self.redis = client
        self._find = find

    async def of(self, account_no: str) -> str:
        """The UUID of ``account_no`` (:class:`~funding.errors.NotFoundError` when Alpaca has no such account)."""
        cached = await self.redis.hget(keys.ACCOUNT_IDS, account_no)
        if cached is not None:
            return text(cached)
        account_id = str((await self._find(account_no)).id)
        await self.redis.hset(keys.ACCOUNT_IDS, account_no, account_id)
        return account_id

    async def known(self, account_no: str) -> bool:
        """True when Alpaca has an account of this number (asked once, then remembered)."""
        try:
            await self.of(account_no)
        except NotFoundError:
            return False
        return True

    async def cached(self, account_nos: Sequence[str]) -> dict[str, str]:
        """The UUIDs already known of ``account_nos`` (one round trip; unknown ones are left out)."""
        if not account_nos:
            return {}
        found = await self.redis.hmget(keys.ACCOUNT_IDS, list(account_nos))
        return {no: text(value) for no, value in zip(account_nos, found, strict=True) if value is not None}
