"""The suite's fixtures live in ``tests/support/fixtures.py`` (a real Redis, the sandbox over HTTP, RQ workers,
the listener, processes); the helpers tests share are the other modules of ``tests/support/``."""

pytest_plugins = ["tests.support.fixtures", "tests.support.sinks"]
