"""deploy/: Kubernetes manifests valid offline, the PrometheusRule and the dashboard use metrics that exist."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import redis
import yaml
from prometheus_client import Metric

from config.settings import DEFAULT_HTTP_PORT, DEFAULT_JOBS_METRICS_PORT
from jobs.job_metrics import JobsCollector
from jobs.registry import ALERT_QUEUE, COVER_QUEUE, JOB_TIMEOUT_SECONDS, SETTLE_QUEUE
from worker.listener_metrics import ListenerMetrics

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
KUBERNETES_VERSION = "1.33.0"
METRIC = re.compile(r"\bsettlekeeper_[a-z0-9_]+")


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def manifests() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted([*DEPLOY.glob("k8s/*.yaml"), *DEPLOY.glob("prometheus/*.yaml")]):
        if path.name == "rules-test.yaml":  # promtool's unit tests, not a manifest
            continue
        for doc in documents(path):
            yield f"{path.relative_to(ROOT)}:{doc['kind']}/{doc['metadata']['name']}", doc


def by_name(kind: str, name: str) -> dict[str, Any]:
    return next(doc for _, doc in manifests() if doc["kind"] == kind and doc["metadata"]["name"] == name)


def exposed_names(families: Iterator[Metric]) -> set[str]:
    """The sample names a scrape can show for these families (``_total``, ``_bucket``… included)."""
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"], "gauge": [""]}
    return {family.name + suffix for family in families for suffix in suffixes[family.type]}


@pytest.fixture
def known_metrics(redis_client: redis.Redis) -> set[str]:
    """Every metric name the listener and the jobs' endpoint expose."""
    collector = JobsCollector(redis_client, (SETTLE_QUEUE, COVER_QUEUE, ALERT_QUEUE))
    return exposed_names(ListenerMetrics().registry.collect()) | exposed_names(iter(collector.collect()))


@pytest.mark.parametrize("name", [name for name, doc in manifests() if doc["apiVersion"].startswith("apps/")])
def test_workload_manifests_validate_strictly_offline(name: str) -> None:
    """Deployments pass kubernetes-validate --strict (unknown fields and wrong types are errors)."""
    doc = next(doc for found, doc in manifests() if found == name)
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_every_manifest_is_a_known_kind() -> None:
    """deploy/ holds Deployments and the Prometheus Operator's PodMonitors and PrometheusRule, nothing else."""
    kinds = sorted((doc["apiVersion"], doc["kind"]) for _, doc in manifests())
    assert set(kinds) == {
        ("apps/v1", "Deployment"),
        ("monitoring.coreos.com/v1", "PodMonitor"),
        ("monitoring.coreos.com/v1", "PrometheusRule"),
    }
    assert len(kinds) == 5


def test_worker_deployment_outlives_a_job_and_serves_metrics_named_after_its_pod() -> None:
    """Grace period above RQ's job timeout; `work --name $(POD_NAME) --metrics-port 9109` on a named port."""
    spec = by_name("Deployment", "settlekeeper-worker")["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] > JOB_TIMEOUT_SECONDS
    [container] = spec["containers"]
    args = container["args"]
    assert args[0] == "work"
    assert args[args.index("--name") + 1] == "$(POD_NAME)"
    assert int(args[args.index("--metrics-port") + 1]) == DEFAULT_JOBS_METRICS_PORT
    assert {"name": "metrics", "containerPort": DEFAULT_JOBS_METRICS_PORT} in container["ports"]
    pod_name = next(e for e in container["env"] if e["name"] == "POD_NAME")
    assert pod_name["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert "--burst" not in args


@pytest.mark.parametrize(
    ("monitor", "deployment", "port"),
    [
        ("settlekeeper-listener", "settlekeeper-listener", DEFAULT_HTTP_PORT),
        ("settlekeeper-worker", "settlekeeper-worker", DEFAULT_JOBS_METRICS_PORT),
    ],
)
def test_pod_monitors_select_their_pods_and_a_named_port(monitor: str, deployment: str, port: int) -> None:
    """Each PodMonitor's selector matches its Deployment's pods and names a port those pods declare."""
    spec = by_name("PodMonitor", monitor)["spec"]
    template = by_name("Deployment", deployment)["spec"]["template"]
    assert spec["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    ports = {p["name"]: p["containerPort"] for c in template["spec"]["containers"] for p in c["ports"]}
    [endpoint] = spec["podMetricsEndpoints"]
    assert ports[endpoint["port"]] == port
    assert endpoint["path"] == "/metrics"


def test_prometheus_rule_shape() -> None:
    """Every rule is an alert with an expression, a severity and a summary and runbook link."""
    rules = [rule for group in by_name("PrometheusRule", "settlekeeper")["spec"]["groups"] for rule in group["rules"]]
    assert len(rules) == 8
    for rule in rules:
        assert rule["alert"].startswith("Settlekeeper")
        assert rule["expr"].strip()
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert set(rule["annotations"]) == {"summary", "description", "runbook_url"}


def test_rules_use_only_metrics_settlekeeper_exposes(known_metrics: set[str]) -> None:
    """Every settlekeeper_* name in the alert expressions is exposed by the listener or the jobs' endpoint."""
    spec = by_name("PrometheusRule", "settlekeeper")["spec"]
    used = {name for group in spec["groups"] for rule in group["rules"] for name in METRIC.findall(rule["expr"])}
    assert len(used) >= 8
    assert used - known_metrics == set()


def test_dashboard_uses_only_metrics_settlekeeper_exposes(known_metrics: set[str]) -> None:
    """The Grafana dashboard is valid JSON, its panels have unique ids, and every metric it queries exists."""
    dashboard = json.loads((DEPLOY / "grafana" / "settlekeeper.json").read_text())
    panels = dashboard["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    exprs = [target["expr"] for panel in panels for target in panel.get("targets", [])]
    used = {name for expr in exprs for name in METRIC.findall(expr)}
    assert used - known_metrics == set()
    issue_figures = {
        "settlekeeper_due_amount_dollars",
        "settlekeeper_due_transfers",
        "settlekeeper_unsettled_transfers",
        "settlekeeper_firm_cash_dollars",
        "settlekeeper_time_to_cutoff_seconds",
        "settlekeeper_if_limit_usage_ratio",
        "settlekeeper_jit_limit_usage_ratio",
        "settlekeeper_late_interest_avoided_dollars",
        "settlekeeper_late_interest_incurred_dollars",
        "settlekeeper_accounts_in_debit",
        "settlekeeper_money_movements_total",
        "settlekeeper_alert_deliveries_total",
        "settlekeeper_action_latency_seconds_bucket",
        "settlekeeper_job_duration_seconds_bucket",
    }
    assert issue_figures <= used
