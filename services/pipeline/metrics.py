"""Every Prometheus metric the pipeline exports, in one container over a given registry.

Labels are bounded enums (outcome, criterion, priority, destination kind, stage, reason, topic),
never an identifier.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from schemas.referral import DestinationKind

log = logging.getLogger(__name__)

# Up to the longest deadline (P3: 7 days to submit), so a slow stage is not lost in +Inf.
_STAGE_BUCKETS = (
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
    900,
    3600,
    14400,
    86400,
    259200,
    604800,
)


# HTTP requests of the case API: a lookup takes milliseconds, a slow database seconds.
_HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

# Event-loop lag: healthy is under a millisecond; a second means the process stalled.
_LOOP_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.router_flags = Counter(
            "csae_router_flags",
            "Flags read by the router, by outcome (refer, review, none, rejected).",
            ["outcome"],
            registry=registry,
        )
        self.router_decisions = Counter(
            "csae_router_decisions",
            "Router decisions by outcome, criterion and rule mode (active or shadow).",
            ["outcome", "criterion", "mode"],
            registry=registry,
        )
        self.dlq_messages = Counter(
            "csae_dlq_messages",
            "Messages refused and recorded on the dead-letter topic, by source topic and reason.",
            ["topic", "reason"],
            registry=registry,
        )
        self.referral_tasks = Counter(
            "csae_referral_tasks",
            "Referral tasks emitted by the router, by destination kind and priority.",
            ["destination", "priority"],
            registry=registry,
        )
        self.stage_seconds = Histogram(
            "csae_stage_seconds",
            "Time spent between pipeline stages (detected_to_routed, routed_to_ready, ...).",
            ["stage", "priority"],
            buckets=_STAGE_BUCKETS,
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "csae_consumer_lag",
            "Messages behind the end of the topic for a consumer group: end offsets less committed "
            "offsets, read from the broker on a timer.",
            ["group", "topic"],
            registry=registry,
        )
        self.assigned_partitions = Gauge(
            "csae_consumer_assigned_partitions",
            "Partitions of its topics this process owns in its consumer group, after the latest "
            "rebalance (0 while it rejoins, or when the group has more members than partitions).",
            ["group"],
            registry=registry,
        )
        self.batch_failures = Counter(
            "csae_batch_failures",
            "Batch attempts that failed with a transient error and were retried.",
            ["group"],
            registry=registry,
        )
        self.unprocessable = Counter(
            "csae_unprocessable",
            "Messages that could not be stored after bounded tries: parked and dead-lettered.",
            ["group", "topic"],
            registry=registry,
        )
        self.parked_messages = Gauge(
            "csae_parked_messages",
            "Parked messages no one has resolved yet (csae parked list), at the last SLA sweep.",
            registry=registry,
        )
        self.cases_overdue = Gauge(
            "csae_cases_overdue",
            "Open cases past the deadline of the stage they wait in, at the last SLA sweep.",
            ["priority", "stage"],
            registry=registry,
        )
        self.sla_breaches = Counter(
            "csae_sla_breaches",
            "SLA breaches, each counted once: a stage done late or still not done by its deadline.",
            ["priority", "stage"],
            registry=registry,
        )
        self.sla_last_sweep = Gauge(
            "csae_sla_last_sweep_timestamp_seconds",
            "When the worker's SLA sweep last completed (Unix time); alert when it falls behind.",
            registry=registry,
        )
        self.cases_written = Counter(
            "csae_cases_written",
            "Case rows created or extended by the referral worker, by destination kind and status.",
            ["destination", "status"],
            registry=registry,
        )
        self.supplements = Counter(
            "csae_supplements",
            "Supplementary packets to send: a case already sent is ready again because flags "
            "joined it after (the worker), or a person sent an older version than the latest "
            "(the API); by destination kind.",
            ["destination"],
            registry=registry,
        )
        self.breaker_open = Gauge(
            "csae_breaker_open",
            "1 while a source's flood breaker is open (its referrals held as reviews), at the "
            "last SLA sweep; by source (system/version).",
            ["source"],
            registry=registry,
        )
        self.breaker_held = Counter(
            "csae_breaker_held",
            "Referral tasks held as reviews because their source's flood breaker was open.",
            ["source"],
            registry=registry,
        )
        self.breaker_passed = Counter(
            "csae_breaker_passed",
            "Referrals of a child in immediate danger sent although their source's breaker was "
            "open.",
            ["source"],
            registry=registry,
        )
        self.case_escalations = Counter(
            "csae_case_escalations",
            "Tasks made by an escalation of the policy firing across the flags of a case, by the "
            "escalation's rule id and priority (a P0 makes one per emergency destination too).",
            ["rule", "priority"],
            registry=registry,
        )
        self.http_requests = Counter(
            "csae_http_requests",
            "HTTP requests answered by the case API, by route template (never the raw path), "
            "method and status code.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.http_request_seconds = Histogram(
            "csae_http_request_seconds",
            "Time to answer an HTTP request of the case API, by route template and method.",
            ["route", "method"],
            buckets=_HTTP_BUCKETS,
            registry=registry,
        )
        self.review_backlog = Gauge(
            "csae_review_backlog_cases",
            "Cases waiting for a person's review, by priority, at the last SLA sweep.",
            ["priority"],
            registry=registry,
        )
        self.review_oldest = Gauge(
            "csae_review_oldest_seconds",
            "How long the oldest case waiting for review has waited since it opened, by "
            "priority, at the last SLA sweep (0 when none waits).",
            ["priority"],
            registry=registry,
        )
        self.db_pool_in_use = Gauge(
            "csae_db_pool_in_use_connections",
            "Database connections checked out of the process's pool (read when scraped).",
            registry=registry,
        )
        self.db_pool_size = Gauge(
            "csae_db_pool_size_connections",
            "Connections the process's database pool keeps open at most before overflowing.",
            registry=registry,
        )
        self.event_loop_lag = Histogram(
            "csae_event_loop_lag_seconds",
            "How late the process's asyncio event loop ran a timer, probed every second: near 0 "
            "when healthy; high while something blocks the loop (CPU-bound work, a synchronous "
            "call).",
            buckets=_LOOP_BUCKETS,
            registry=registry,
        )
        # Exported at 0 from the start, so `increase()` sees a first breach (a series that
        # appears with its first event shows no increase).
        for priority in ("P0", "P1", "P2", "P3"):
            for stage in ("review", "ready", "submitted"):
                self.sla_breaches.labels(priority, stage)
        for kind in DestinationKind:
            self.supplements.labels(kind.value)

    def case_moved(
        self,
        *,
        priority: str,
        ready_seconds: float | None,
        breaches: Iterable[tuple[str, str]],
        supplement_to: str | None = None,
    ) -> None:
        """What a person's move tells the metrics: how long a packet waited ready before it
        was sent (at the priority whose deadline it had), each breach the move found, and a
        supplement it made (an older version sent) to the destination kind `supplement_to`."""
        if ready_seconds is not None:
            self.stage_seconds.labels("ready_to_submitted", priority).observe(ready_seconds)
        for late_priority, stage in breaches:
            self.sla_breaches.labels(late_priority, stage).inc()
        if supplement_to is not None:
            self.supplements.labels(supplement_to).inc()


async def watch_event_loop(metrics: Metrics, stop: asyncio.Event, interval: float = 1.0) -> None:
    """Until `stop` is set, sleep `interval` and observe in `csae_event_loop_lag_seconds` how
    much later than asked the loop woke up."""
    while not stop.is_set():
        asked = time.monotonic()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
        if not stop.is_set():
            metrics.event_loop_lag.observe(max(time.monotonic() - asked - interval, 0.0))
