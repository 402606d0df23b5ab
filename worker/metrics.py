"""The listener's Prometheus metrics, registered in a registry the caller owns (one per process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, disable_created_metrics

NAMESPACE = "settlekeeper"


class ListenerMetrics:
    """Every series ``/metrics`` exposes for the listener. Labels never carry ids or amounts."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created series add nothing for a scrape target that restarts rarely
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "stream_events",
            "Stream events received, by stream and activity type.",
            ["stream", "type"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.replayed = Counter(
            "stream_replayed_events",
            "Events received again at or before the stored cursor (replays, duplicates).",
            ["stream"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.malformed = Counter(
            "stream_malformed_events",
            "Events dead-lettered, by reason.",
            ["stream", "reason"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.reconnects = Counter(
            "stream_reconnects",
            "Stream reconnections, by reason.",
            ["stream", "reason"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.rewinds = Counter(
            "stream_rewinds",
            "Rewinds to the cursor after the server said it dropped messages.",
            ["stream"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.comments = Counter(
            "stream_comments",
            "Comment lines received, by kind (heartbeat, dropped, internal_error, other).",
            ["stream", "kind"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.connected = Gauge(
            "stream_connected", "1 while the stream is connected.", ["stream"], namespace=NAMESPACE, registry=r
        )
        self.cursor_timestamp = Gauge(
            "stream_cursor_advanced_timestamp_seconds",
            "Unix time the stream's cursor last advanced.",
            ["stream"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.last_message = Gauge(
            "stream_last_message_timestamp_seconds",
            "Unix time of the last event or heartbeat (liveness).",
            ["stream"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.lag = Gauge(
            "stream_lag_seconds",
            "Broker clock minus the emission time of the last event committed.",
            ["stream"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.leader = Gauge(
            "listener_leader",
            "1 while this listener holds the lease and reads, 0 on standby.",
            namespace=NAMESPACE,
            registry=r,
        )
        self.records = Counter(
            "transfer_records",
            "Transfer status records, by source and outcome (recorded, updated, duplicate).",
            ["source", "outcome"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.actions = Counter(
            "actions_enqueued",
            "RQ jobs handed over from the outbox, by kind and result (enqueued, duplicate).",
            ["kind", "result"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.hints = Gauge(
            "transfer_hints_pending",
            "Transfers named by events and not yet read over REST.",
            namespace=NAMESPACE,
            registry=r,
        )
        self.heal_runs = Counter(
            "heal_runs", "REST heal poller runs, by result.", ["result"], namespace=NAMESPACE, registry=r
        )
        self.rest_errors = Counter(
            "broker_errors",
            "Broker API errors seen by the listener, by kind.",
            ["kind"],
            namespace=NAMESPACE,
            registry=r,
        )
