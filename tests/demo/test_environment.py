"""The environment of a settlekeeper subprocess (demo/environment.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from config.settings import load_settings
from demo.environment import child_environment


def test_child_gets_every_setting_from_the_object_and_none_of_the_parents(monkeypatch: pytest.MonkeyPatch) -> None:
    """SETTLEKEEPER_* come from the settings object and overrides (secrets in clear); the parent's are dropped."""
    monkeypatch.setenv("SETTLEKEEPER_BROKER_URL", "https://broker-api.alpaca.markets")
    monkeypatch.setenv("PATH", "/usr/bin")
    settings = load_settings({}, cover_only_if_debits=False, max_cover_per_account=Decimal("2.5"))
    env = child_environment(settings, {"broker_url": "http://127.0.0.1:1", "http_port": 0, "redis_url": None})
    assert env["PATH"] == "/usr/bin"
    assert env["SETTLEKEEPER_BROKER_URL"] == "http://127.0.0.1:1"
    assert env["SETTLEKEEPER_BROKER_SECRET"] == "sandbox-secret"
    assert env["SETTLEKEEPER_COVER_ONLY_IF_DEBITS"] == "false"
    assert env["SETTLEKEEPER_HTTP_PORT"] == "0"
    assert "SETTLEKEEPER_REDIS_URL" not in env
    child = load_settings(env)
    assert child.max_cover_per_account == Decimal("2.5")
    assert child.model_dump(exclude={"broker_url", "http_port"}) == settings.model_dump(
        exclude={"broker_url", "http_port"}
    )
