"""promtool on what settlekeeper ships: both /metrics endpoints lint clean, the alert rules pass their unit tests.

promtool comes from Debian's ``prometheus`` package (``.ci/run`` installs it). Without it on PATH these tests
skip with the reason, except in CI (``CI=true``), where a missing promtool fails them.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import urllib.request
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
import yaml

from funding.records import Action
from jobs import job_metrics as metrics
from jobs.registry import ALERT_QUEUE, COVER_QUEUE, SETTLE_QUEUE, enqueue_action
from store.audit import Intent
from tests.support.listener import eventually, listener_settings
from tests.support.sandbox import Sandbox
from tests.support.tools import require
from worker.listener import Listener

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "deploy" / "prometheus" / "rules.yaml"
RULES_TEST = ROOT / "deploy" / "prometheus" / "rules-test.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "settlekeeper.json"


@pytest.fixture(scope="session")
def promtool() -> str:
    """The promtool binary; skip without it, but fail in CI, which must run these tests."""
    return require({"promtool": "prometheus"})["promtool"]


def run(
    promtool: str, *args: str, cwd: Path | None = None, given: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], cwd=cwd, input=given, capture_output=True, text=True, timeout=60, check=False
    )


def check_metrics(promtool: str, exposition: str) -> None:
    """`promtool check metrics` exits 0 and reports no lint problem."""
    done = run(promtool, "check", "metrics", given=exposition)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "", done.stdout
    assert done.stderr.strip() == "", done.stderr


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - a loopback URL of this test
        return str(response.read().decode())


async def test_listener_metrics_pass_promtool(
    promtool: str, sandbox: Sandbox, session_redis_url: str, redis_client: redis.Redis
) -> None:
    """The listener's /metrics, leading with its streams connected and an event recorded, lints clean."""
    listener = Listener(listener_settings(sandbox), session_redis_url)
    stop = asyncio.Event()
    task = asyncio.create_task(listener.run(stop))
    try:

        async def leading() -> bool:
            return listener.health.role == "leader" and all(r.connected for r in listener.readers)

        async def recorded() -> bool:
            # by the stream's hint or by the heal poller's read after the connect, whichever came first
            registry = listener.metrics.registry
            return any(
                registry.get_sample_value("settlekeeper_transfer_records_total", {"source": s, "outcome": "recorded"})
                for s in ("stream", "poller")
            )

        await eventually(leading)
        await sandbox.create_transfer("8100000001", "25.00")
        await sandbox.advance(2)
        await eventually(recorded)
        text = await asyncio.to_thread(_get, f"http://127.0.0.1:{listener.health.http_port}/metrics")
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert "settlekeeper_listener_leader 1.0" in text
    check_metrics(promtool, text)


async def test_jobs_metrics_pass_promtool(promtool: str, session_redis_url: str, redis_client: redis.Redis) -> None:
    """The jobs' /metrics (served as `settlekeeper work` does), with every family holding samples, lints clean."""
    client = aioredis.Redis.from_url(session_redis_url)
    try:
        intent = Intent("fund-2026-11-24-1", "fund", "2026-11-24", "SI lacks what is due", Decimal("350.50"), "key")
        for outcome in ("executed", "pending", "refused"):
            await metrics.count_movement(client, intent, outcome)
        await metrics.count_alert(client, "rf_short", "pagerduty", "sent")
        await metrics.settle_finished(client, "settle", "done")
        await metrics.cover_finished(client, date(2026, 11, 24), "8100000004", "pending")
    finally:
        await client.aclose()
    metrics.observe_job(redis_client, "settle.run_phase", "succeeded", 2.5)
    metrics.observe_job(redis_client, "cover.cover_account", "failed", 0.2)
    cover = Action("0-1", "cover-8100000004-2026-11-24", "cover", "8100000004", "2026-11-24")
    assert enqueue_action(redis_client, cover)
    server = metrics.serve_metrics(redis_client, (SETTLE_QUEUE, COVER_QUEUE, ALERT_QUEUE), 0, addr="127.0.0.1")
    try:
        text = await asyncio.to_thread(_get, f"http://127.0.0.1:{server.server_port}/metrics")
    finally:
        server.shutdown()
        server.server_close()
    assert 'settlekeeper_money_movements_total{kind="fund",outcome="executed"} 1.0' in text
    assert 'settlekeeper_queue_jobs{queue="settlekeeper-cover",state="queued"} 1.0' in text
    check_metrics(promtool, text)


def test_alert_rules_pass_promtool_check_and_unit_tests(promtool: str, tmp_path: Path) -> None:
    """The PrometheusRule's spec, as a plain rule file, passes `promtool check rules` and rules-test.yaml."""
    spec = yaml.safe_load(RULES.read_text())["spec"]
    (tmp_path / "settlekeeper.rules.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    shutil.copy(RULES_TEST, tmp_path / "rules-test.yaml")
    checked = run(promtool, "check", "rules", "settlekeeper.rules.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {sum(len(g['rules']) for g in spec['groups'])} rules found" in checked.stdout
    tested = run(promtool, "test", "rules", "rules-test.yaml", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_rule_has_a_unit_test_that_fires_it() -> None:
    """rules-test.yaml expects each alert of rules.yaml to fire at least once."""
    spec = yaml.safe_load(RULES.read_text())["spec"]
    alerts = {rule["alert"] for group in spec["groups"] for rule in group["rules"]}
    fired = {
        case["alertname"]
        for test in yaml.safe_load(RULES_TEST.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert alerts == fired


def test_dashboard_queries_are_valid_promql(promtool: str, tmp_path: Path) -> None:
    """Every expression of the Grafana dashboard parses (checked as recording rules by promtool)."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    exprs = [target["expr"] for panel in panels for target in panel.get("targets", [])]
    assert len(exprs) > 20
    recording = [{"record": f"dashboard:q{n}", "expr": expr} for n, expr in enumerate(exprs)]
    (tmp_path / "dashboard.rules.yaml").write_text(
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": recording}]})
    )
    checked = run(promtool, "check", "rules", "dashboard.rules.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in checked.stdout
