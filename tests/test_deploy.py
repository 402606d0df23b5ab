"""deploy/: the kustomize overlays render objects valid offline (core kinds by kubernetes-validate, KEDA's and the
Prometheus Operator's by their own CRDs), locked down, and the PrometheusRule and the dashboard use metrics that
exist."""

from __future__ import annotations

import copy
import functools
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import redis
import yaml
from prometheus_client import Metric

from config.redis_urls import redis_url_problem
from config.settings import DEFAULT_HTTP_PORT, DEFAULT_JOBS_METRICS_PORT, load_settings
from jobs.job_metrics import JobsCollector
from jobs.registry import ALERT_QUEUE, COVER_QUEUE, JOB_TIMEOUT_SECONDS, SETTLE_QUEUE
from tests.support.tools import require
from worker.listener import SHUTDOWN_SECONDS
from worker.listener_metrics import ListenerMetrics

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
KUBERNETES_VERSION = "1.33.0"
METRIC = re.compile(r"\bsettlekeeper_[a-z0-9_]+")


OVERLAYS = ("staging", "production")
CRDS = ROOT / "tests" / "fixtures" / "crds"
CUSTOM_KINDS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_scaledobjects.yaml",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "keda.sh_triggerauthentications.yaml",
    ("monitoring.coreos.com/v1", "PodMonitor"): "monitoring.coreos.com_podmonitors.yaml",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com_prometheusrules.yaml",
}
"""The custom resources, each with the CRD its project publishes (tests/fixtures/crds/README.md: where from)."""


@functools.cache
def rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    """``kubectl kustomize deploy/k8s/overlays/<overlay>``: every object that overlay applies."""
    kubectl = require({"kubectl": "kubernetes-client"})["kubectl"]
    out = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY / "k8s" / "overlays" / overlay)], check=True, capture_output=True, text=True
    ).stdout
    return tuple(doc for doc in yaml.safe_load_all(out) if doc)


def manifests(overlay: str = "production") -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in rendered(overlay):
        yield f"{doc['kind']}/{doc['metadata']['name']}", doc


def by_name(kind: str, name: str, overlay: str = "production") -> dict[str, Any]:
    return next(doc for _, doc in manifests(overlay) if doc["kind"] == kind and doc["metadata"]["name"] == name)


def pod_specs(overlay: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, doc in manifests(overlay):
        if doc["kind"] == "Deployment":
            yield name, doc["spec"]["template"]["spec"]


@functools.cache
def crd_schema(filename: str) -> dict[str, Any]:
    """The served version's openAPIV3Schema, closed: an unknown field is an error (as `kubectl apply
    --validate=strict` makes it), except where the CRD keeps unknown fields itself."""
    crd = yaml.safe_load((CRDS / filename).read_text())
    [version] = [v for v in crd["spec"]["versions"] if v["served"] and v["storage"]]
    return _closed(version["schema"]["openAPIV3Schema"])


def check(doc: dict[str, Any], filename: str) -> None:
    """Validate ``doc`` against a CRD's schema. The schema itself is not checked: its patterns are Go's (one
    starts ``^(?i)``, which Python's re refuses), and they apply only to fields settlekeeper does not set."""
    jsonschema.Draft7Validator(crd_schema(filename)).validate(doc)


def _closed(schema: dict[str, Any]) -> dict[str, Any]:
    closed = {key: value for key, value in schema.items()}
    if "properties" in schema:
        closed["properties"] = {name: _closed(sub) for name, sub in schema["properties"].items()}
        if not schema.get("x-kubernetes-preserve-unknown-fields") and "additionalProperties" not in schema:
            closed["additionalProperties"] = False
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            closed[key] = _closed(schema[key])
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            closed[key] = [_closed(sub) for sub in schema[key]]
    return closed


def exposed_names(families: Iterator[Metric]) -> set[str]:
    """The sample names a scrape can show for these families (``_total``, ``_bucket``… included)."""
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"], "gauge": [""]}
    return {family.name + suffix for family in families for suffix in suffixes[family.type]}


@pytest.fixture
def known_metrics(redis_client: redis.Redis) -> set[str]:
    """Every metric name the listener and the jobs' endpoint expose."""
    collector = JobsCollector(redis_client, (SETTLE_QUEUE, COVER_QUEUE, ALERT_QUEUE))
    return exposed_names(ListenerMetrics().registry.collect()) | exposed_names(iter(collector.collect()))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_core_objects_of_each_overlay_validate_strictly_offline(overlay: str) -> None:
    """Every core object of the rendered overlay passes kubernetes-validate --strict (unknown fields and wrong
    types are errors); the overlay has every kind the deployment needs."""
    kinds = {(doc["apiVersion"], doc["kind"]) for doc in rendered(overlay)}
    assert kinds == {
        ("v1", "ServiceAccount"),
        ("v1", "ConfigMap"),
        ("apps/v1", "Deployment"),
        ("policy/v1", "PodDisruptionBudget"),
        ("networking.k8s.io/v1", "NetworkPolicy"),
        *CUSTOM_KINDS,
    }
    for doc in rendered(overlay):
        if (doc["apiVersion"], doc["kind"]) not in CUSTOM_KINDS:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    assert {doc["metadata"]["namespace"] for doc in rendered(overlay)} == {
        "settlekeeper-staging" if overlay == "staging" else "settlekeeper"
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_custom_resources_validate_against_their_projects_crds(overlay: str) -> None:
    """ScaledObject and TriggerAuthentication against KEDA's CRDs, PodMonitor and PrometheusRule against the
    Prometheus Operator's: each object's schema, closed to unknown fields."""
    checked = 0
    for doc in rendered(overlay):
        filename = CUSTOM_KINDS.get((doc["apiVersion"], doc["kind"]))
        if filename is not None:
            check(doc, filename)
            checked += 1
    assert checked == 5


def test_the_crd_check_refuses_an_unknown_field() -> None:
    """The closed schema is strict: a misspelt ScaledObject field (minReplicas) fails validation."""
    scaled = copy.deepcopy(by_name("ScaledObject", "settlekeeper-worker"))
    scaled["spec"]["minReplicas"] = scaled["spec"].pop("minReplicaCount")
    with pytest.raises(jsonschema.ValidationError, match="minReplicas"):
        check(scaled, CUSTOM_KINDS[("keda.sh/v1alpha1", "ScaledObject")])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_runs_locked_down(overlay: str) -> None:
    """Non-root with a fixed UID, read-only root, no privilege escalation, no capabilities, RuntimeDefault
    seccomp, requests and limits, no service account token, and no writable volume (no process writes)."""
    specs = dict(pod_specs(overlay))
    assert set(specs) == {"Deployment/settlekeeper-listener", "Deployment/settlekeeper-worker"}
    for name, spec in specs.items():
        pod = spec["securityContext"]
        assert (pod["runAsNonRoot"], pod["runAsUser"], pod["seccompProfile"]) == (
            True,
            10001,
            {"type": "RuntimeDefault"},
        )
        assert spec["automountServiceAccountToken"] is False
        assert spec["serviceAccountName"] == "settlekeeper"
        for volume in spec.get("volumes", []):
            assert set(volume) == {"name", "secret"}, f"{name}: {volume['name']} is writable"
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context == {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "runAsNonRoot": True,
                "capabilities": {"drop": ["ALL"]},
                "seccompProfile": {"type": "RuntimeDefault"},
            }, name
            resources = container["resources"]
            assert set(resources["requests"]) == {"cpu", "memory"} == set(resources["limits"]), name
            assert all(mount["readOnly"] for mount in container.get("volumeMounts", [])), name
    account = by_name("ServiceAccount", "settlekeeper", overlay)
    assert account["automountServiceAccountToken"] is False


def test_the_listener_keeps_a_leader_through_updates_and_disruptions() -> None:
    """Two listeners, a rolling update that starts the new one before stopping an old one, probes, a preStop
    pause plus the listener's own shutdown inside the grace period; PDBs keep a listener and lose one worker
    at most."""
    deployment = by_name("Deployment", "settlekeeper-listener")
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    pod = spec["template"]["spec"]
    [container] = pod["containers"]
    assert {"startupProbe", "livenessProbe", "readinessProbe"} <= set(container)
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pause + SHUTDOWN_SECONDS < pod["terminationGracePeriodSeconds"]
    listeners = by_name("PodDisruptionBudget", "settlekeeper-listener")["spec"]
    workers = by_name("PodDisruptionBudget", "settlekeeper-worker")["spec"]
    assert (listeners["minAvailable"], workers["maxUnavailable"]) == (1, 1)
    assert listeners["selector"]["matchLabels"]["app.kubernetes.io/component"] == "listener"
    assert workers["selector"]["matchLabels"]["app.kubernetes.io/component"] == "worker"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_keda_scales_the_workers_on_every_queue_with_credentials_from_a_secret(overlay: str) -> None:
    """One redis trigger per RQ queue list, at least one worker always, the credentials through a
    TriggerAuthentication that reads the example Secret's keys; the worker Deployment leaves replicas to KEDA."""
    scaled = by_name("ScaledObject", "settlekeeper-worker", overlay)["spec"]
    assert scaled["scaleTargetRef"]["name"] == "settlekeeper-worker"
    assert scaled["minReplicaCount"] >= 1
    assert scaled["maxReplicaCount"] > scaled["minReplicaCount"]
    lists = {trigger["metadata"]["listName"] for trigger in scaled["triggers"]}
    assert lists == {f"rq:queue:{name}" for name in (SETTLE_QUEUE, COVER_QUEUE, ALERT_QUEUE)}
    assert {trigger["type"] for trigger in scaled["triggers"]} == {"redis"}
    auth = by_name("TriggerAuthentication", "settlekeeper-redis", overlay)["spec"]["secretTargetRef"]
    assert {t["authenticationRef"]["name"] for t in scaled["triggers"]} == {"settlekeeper-redis"}
    example = yaml.safe_load((DEPLOY / "k8s" / "secret.example.yaml").read_text())
    for ref in auth:
        if ref["name"] == "settlekeeper-secrets":
            assert ref["key"] in example["stringData"]
    assert "replicas" not in by_name("Deployment", "settlekeeper-worker", overlay)["spec"]


def test_the_example_secret_is_valid_and_holds_placeholders_only() -> None:
    """secret.example.yaml validates, names every secret setting and KEDA's keys, and every value is CHANGE-ME'd."""
    example = yaml.safe_load((DEPLOY / "k8s" / "secret.example.yaml").read_text())
    kubernetes_validate.validate(example, KUBERNETES_VERSION, strict=True)
    values = example["stringData"]
    assert set(values) == {
        "SETTLEKEEPER_REDIS_URL",
        "SETTLEKEEPER_BROKER_KEY",
        "SETTLEKEEPER_BROKER_SECRET",
        "SETTLEKEEPER_SLACK_WEBHOOK_URL",
        "SETTLEKEEPER_PAGERDUTY_ROUTING_KEY",
        "REDIS_ADDRESS",
        "REDIS_USERNAME",
        "REDIS_PASSWORD",
    }
    secret_like = [v for k, v in values.items() if k not in {"REDIS_ADDRESS", "REDIS_USERNAME"}]
    assert all("CHANGE-ME" in value for value in secret_like)
    assert redis_url_problem(values["SETTLEKEEPER_REDIS_URL"]) is None


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_network_policy_lets_in_monitoring_only_and_out_dns_redis_and_https(overlay: str) -> None:
    """Ingress: the two metrics ports from the monitoring namespace. Egress: DNS, the Redis ports, 443 to public
    addresses; nothing else."""
    policy = by_name("NetworkPolicy", "settlekeeper", overlay)["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    [ingress] = policy["ingress"]
    assert ingress["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    assert {p["port"] for p in ingress["ports"]} == {DEFAULT_HTTP_PORT, DEFAULT_JOBS_METRICS_PORT}
    ports = sorted((p["protocol"], p["port"]) for rule in policy["egress"] for p in rule["ports"])
    assert ports == sorted([("UDP", 53), ("TCP", 53), ("TCP", 6379), ("TCP", 6380), ("TCP", 26379), ("TCP", 443)])
    [https] = [rule for rule in policy["egress"] if rule["ports"] == [{"protocol": "TCP", "port": 443}]]
    assert https["to"][0]["ipBlock"]["cidr"] == "0.0.0.0/0"
    assert "10.0.0.0/8" in https["to"][0]["ipBlock"]["except"]


def test_each_overlay_points_at_its_broker_api_with_its_modes() -> None:
    """Staging: Alpaca's sandbox host, modes on. Production: the live host, modes dry-run until go-live. Both
    configs are settings settlekeeper accepts."""
    for overlay, url, mode in (
        ("staging", "https://broker-api.sandbox.alpaca.markets", "on"),
        ("production", "https://broker-api.alpaca.markets", "dry-run"),
    ):
        [config] = [doc for doc in rendered(overlay) if doc["kind"] == "ConfigMap"]
        data = config["data"]
        assert data["SETTLEKEEPER_BROKER_URL"] == url
        assert {data[f"SETTLEKEEPER_{a}_MODE"] for a in ("SETTLE", "FUND", "COVER")} == {mode}
        settings = load_settings(data)
        assert settings.mode("settle") == mode
        for _, spec in pod_specs(overlay):
            refs = [
                source["configMapRef"]["name"]
                for c in spec["containers"]
                for source in c["envFrom"]
                if "configMapRef" in source
            ]
            assert refs == [config["metadata"]["name"]]


def test_the_prometheus_selector_label_is_set_once_on_every_monitoring_object() -> None:
    """release: kube-prometheus-stack on both PodMonitors and the PrometheusRule, written in one file only."""
    for name, doc in manifests():
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            assert doc["metadata"]["labels"]["release"] == "kube-prometheus-stack", name
    written = [p for p in DEPLOY.rglob("*.yaml") if "release: kube-prometheus-stack" in p.read_text()]
    assert [p.relative_to(DEPLOY).as_posix() for p in written] == ["prometheus/kustomization.yaml"]


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
    assert len(rules) == 9
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
