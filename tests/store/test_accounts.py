"""The one account-number → UUID cache (store/accounts.py), against the sandbox's ``GET /v1/accounts``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis
import redis.asyncio as aioredis

from broker.client import BrokerClient
from config.settings import load_settings
from funding.errors import NotFoundError
from store import keys
from store.accounts import AccountIds
from tests.support.sandbox import Sandbox
from tests.support.scenario import customer


@pytest.fixture
async def accounts(sandbox: Sandbox, async_redis: aioredis.Redis) -> AsyncIterator[AccountIds]:
    """The cache on the flushed test Redis, asking the sandbox."""
    async with BrokerClient(load_settings({}, broker_url=sandbox.base_url)) as broker:
        yield AccountIds(async_redis, broker.find_account)


async def lookups(sandbox: Sandbox) -> int:
    """``GET /v1/accounts`` requests the sandbox has answered since its request log was cleared."""
    rows = (await sandbox.ok("GET", "/sandbox/requests"))["requests"]
    return sum(1 for row in rows if row["path"] == "/v1/accounts")


async def test_a_number_is_asked_once_then_read_from_redis(
    sandbox: Sandbox, accounts: AccountIds, redis_client: redis.Redis
) -> None:
    """The first of() asks the Broker API and keeps the id in sk:account_ids; later calls ask nothing."""
    await sandbox.ok("DELETE", "/sandbox/requests")
    expected = await sandbox.account_id(customer(1))
    await sandbox.ok("DELETE", "/sandbox/requests")
    assert await accounts.of(customer(1)) == expected
    assert await accounts.of(customer(1)) == expected
    assert await accounts.known(customer(1))
    assert await lookups(sandbox) == 1
    assert redis_client.hget(keys.ACCOUNT_IDS, customer(1)) == expected.encode()


async def test_an_unknown_number_is_not_found_and_never_cached(
    sandbox: Sandbox, accounts: AccountIds, redis_client: redis.Redis
) -> None:
    """of() raises NotFoundError, known() says False, and nothing is written (a later account of that number
    would be found)."""
    await sandbox.ok("DELETE", "/sandbox/requests")
    with pytest.raises(NotFoundError):
        await accounts.of("8199999999")
    assert not await accounts.known("8199999999")
    assert await lookups(sandbox) == 2
    assert redis_client.hlen(keys.ACCOUNT_IDS) == 0


async def test_cached_returns_only_known_ids_in_one_read(sandbox: Sandbox, accounts: AccountIds) -> None:
    """cached() asks nothing of the Broker API: ids already looked up, the others left out."""
    first = await accounts.of(customer(1))
    await sandbox.ok("DELETE", "/sandbox/requests")
    assert await accounts.cached([customer(1), customer(2)]) == {customer(1): first}
    assert await accounts.cached([]) == {}
    assert await lookups(sandbox) == 0
