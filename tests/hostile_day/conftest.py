"""Fixtures of the hostile-day tests: real processes, and a Redis of their own with a password and AOF."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.jobs.conftest import job_env, run_worker
from tests.processes import processes
from tests.redis_server import RedisServer, redis_server
from tests.worker.conftest import start_listener, store

__all__ = ["job_env", "processes", "run_worker", "server", "start_listener", "store"]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis with a password and AOF everysec, restartable, for this test alone."""
    with redis_server(tmp_path) as running:
        yield running
