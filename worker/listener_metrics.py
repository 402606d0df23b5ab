"""The listener's Prometheus metrics, registered in a registry the caller owns (one per process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

NAMESPACE = "settlekeeper"
ACTION_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
"""Seconds: an action is normally enqueued within milliseconds of its record; minutes mean RQ's Redis was
slow or unreachable, and the outbox held the action meanwhile."""


class ListenerMetrics:
    """Every series ``/metrics`` exposes for the listener. Labels never carry ids or amounts."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created series add nothing for a scrape target that restarts rarely
        self.registry = registry or CollectorRegistry()
        self.due_deadlines: set[str] = set()
        """The ``deadline`` labels of the due gauges now exported (the limits monitor keeps them current)."""
        self._streams(self.registry)
        self._pipeline(self.registry)
        self._limits(self.registry)

    def _streams(self, r: CollectorRegistry) -> None:
        """The stream readers' series."""
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
        self.oddities = Counter(
            "stream_oddities",
            "Input read despite being looser than Alpaca's document (null or missing fields, undocumented values "
            "or shapes, a redirect), by kind: recorded as far as it goes, never acted on beyond that.",
            ["stream", "oddity"],
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

    def _pipeline(self, r: CollectorRegistry) -> None:
        """Leadership, records, actions, hints, the heal poller, Redis and the Broker API as the listener sees them."""
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
        self.action_latency = Histogram(
            "action_latency_seconds",
            "Seconds from the transfer record that decided an action (written right after its event's REST "
            "read, or by the heal poller) to the action's RQ enqueue, by kind. Event to record: stream lag.",
            ["kind"],
            buckets=ACTION_LATENCY_BUCKETS,
            namespace=NAMESPACE,
            registry=r,
        )
        self.redis_up = Gauge(
            "redis_up",
            "1 while the listener's last Redis command (lease, commit) succeeded, 0 while Redis is unreachable.",
            namespace=NAMESPACE,
            registry=r,
        )
        self.auth_failures = Counter(
            "broker_auth_failures",
            "Times the Broker API refused the credentials (HTTP 401/403).",
            namespace=NAMESPACE,
            registry=r,
        )
        self.credentials_ok = Gauge(
            "broker_credentials_ok",
            "1 once the Broker API accepted the credentials, 0 after it refused them (until accepted again).",
            namespace=NAMESPACE,
            registry=r,
        )

    def _limits(self, r: CollectorRegistry) -> None:
        """The limits monitor's (worker/limits.py), every SETTLEKEEPER_LIMITS_POLL_SECONDS."""
        self.limits_polls = Counter("limits_polls", "Limits monitor polls.", namespace=NAMESPACE, registry=r)
        self.limits_poll_errors = Counter(
            "limits_poll_errors",
            "Parts of a limits monitor poll that failed (if_limit, jit_limit, firm_cash).",
            ["part"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.if_usage = Gauge(
            "if_limit_usage_ratio",
            "Instant funding limit in use / limit (GET /v1/instant_funding/limits); new transfers fail at 1.",
            namespace=NAMESPACE,
            registry=r,
        )
        self.if_in_use = Gauge(
            "if_limit_amount_in_use_dollars",
            "Instant funding amount in use: transfers not yet settled or canceled.",
            namespace=NAMESPACE,
            registry=r,
        )
        self.if_limit = Gauge(
            "if_limit_amount_limit_dollars",
            "The correspondent's instant funding limit.",
            namespace=NAMESPACE,
            registry=r,
        )
        self.jit_usage = Gauge(
            "jit_limit_usage_ratio",
            "JIT in_use_limit / daily_net_limit (GET /v1/transfers/jit/limits); buying halts at 1.",
            namespace=NAMESPACE,
            registry=r,
        )
        self.jit_in_use = Gauge(
            "jit_limit_in_use_dollars",
            "JIT in_use_limit: executed buys - executed sells + open buys - open sells (+ cash held).",
            namespace=NAMESPACE,
            registry=r,
        )
        self.jit_limit = Gauge(
            "jit_limit_daily_net_limit_dollars",
            "The JIT daily net limit (resets at 8 PM ET).",
            namespace=NAMESPACE,
            registry=r,
        )
        self.firm_cash = Gauge(
            "firm_cash_dollars",
            "Cash of the partner's firm accounts (SI pays settlements, RF funds SI and covers, FW gets sweeps).",
            ["account"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.due_amount = Gauge(
            "due_amount_dollars",
            "Remaining payable of unsettled transfers, for the open deadline and the next one (from the store).",
            ["deadline"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.due_transfers = Gauge(
            "due_transfers",
            "Unsettled transfers, for the open deadline and the next one (from the store).",
            ["deadline"],
            namespace=NAMESPACE,
            registry=r,
        )
        self.time_to_cutoff = Gauge(
            "time_to_cutoff_seconds",
            "Seconds to the next 1 PM ET settlement cutoff on a trading day.",
            namespace=NAMESPACE,
            registry=r,
        )

    def clear_due(self) -> None:
        """Stop exporting the due gauges (a standby follows no deadline; a new term sets them afresh)."""
        for deadline in self.due_deadlines:
            self.due_amount.remove(deadline)
            self.due_transfers.remove(deadline)
        self.due_deadlines = set()
