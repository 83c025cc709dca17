"""The router's Kafka edge: decode each flag, route it, produce decisions, tasks, dead letters."""

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from schemas.flag import ModerationFlag
from schemas.referral import Decision, RejectionReason
from services.domain.destinations import unknown_force_ids
from services.domain.forces import ForceDirectory
from services.domain.organisations import Organisations
from services.domain.policy import Policy
from services.pipeline import health as health_module
from services.pipeline.decode import Refusal, decode, flag_id_in, refused, unprocessable
from services.pipeline.dlq import dead_letter
from services.pipeline.kafka import (
    BatchHandler,
    Record,
    broker_unavailable,
    consumer_health,
    produce_all,
    run_consumer_service,
    stop_on_signals,
)
from services.pipeline.metrics import Metrics
from services.pipeline.settings import Settings
from services.pipeline.startup import organisations, startup_checks
from services.router.routing import Routing, route

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


class FlagRouter:
    """Handles one batch of raw flags; returns once every output is acknowledged by the broker."""

    def __init__(
        self,
        producer: AIOKafkaProducer,
        *,
        settings: Settings,
        metrics: Metrics,
        policy: Policy,
        directory: ForceDirectory,
        organisations: Organisations | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._producer = producer
        self._settings = settings
        self._metrics = metrics
        self._policy = policy
        self._directory = directory
        self._organisations = organisations
        self._clock = clock

    def _route(self, record: Record, now: datetime) -> Routing | Refusal:
        """Decode and route one flag; a flag the domain cannot handle is refused, not retried."""
        result = decode(record.value, ModerationFlag, max_bytes=self._settings.max_flag_bytes)
        if isinstance(result, Refusal):
            return result
        if self._organisations is not None and (
            self._organisations.find(result.platform.org_id) is None
        ):
            # No packet may go out in the name of an organisation the deployment does not know.
            return refused(
                record.value,
                result.flag_id,
                RejectionReason.UNKNOWN_ORGANISATION,
                "platform.org_id is not in the directory of reporting organisations",
            )
        for force_id in unknown_force_ids(result, self._directory):
            # Passed over for the postcode (else the next fallback): say so, or a producer's
            # stale or misspelt force id would send referrals to another force unnoticed.
            log.warning(
                "unknown force id on a location of the flag: routed by postcode or fallback",
                extra={"flag_id": result.flag_id, "force_id": force_id},
            )
        try:
            return route(
                result,
                policy=self._policy,
                directory=self._directory,
                home_force_id=self._settings.home_force_id,
                now=now,
                deadlines=self._settings.sla_deadlines,
                organisation=(
                    self._organisations.find(result.platform.org_id)
                    if self._organisations is not None
                    else None
                ),
            )
        except (ValueError, OverflowError) as exc:
            # A valid flag that routing cannot handle is a bug of ours: say so loudly (log, DLQ,
            # metric) instead of blocking every flag behind it on the partition.
            log.error(  # no traceback: its text may quote the flag's values
                "flag could not be routed",
                extra={"flag_id": result.flag_id, "error": type(exc).__name__},
            )
            return unprocessable(record.value, result.flag_id, type(exc).__name__)

    async def __call__(self, records: Sequence[Record]) -> None:
        s = self._settings
        decisions, referrals = s.topic_decisions, s.topic_referrals
        messages: list[tuple[str, bytes | None, bytes]] = []
        routed: list[Routing] = []
        refused: list[tuple[str, str]] = []
        for record in records:
            now = self._clock()
            result = self._route(record, now)
            if isinstance(result, Refusal):
                letter = dead_letter(record, result, group=s.router_group, now=now)
                key = str(result.flag_id).encode() if result.flag_id else None
                messages.append((s.topic_dlq, key, letter.model_dump_json().encode()))
                refused.append((record.topic, result.reason.value))
                continue
            routing = result
            messages.append((decisions, routing.flag_key, routing.decision_json()))
            for task in routing.tasks:
                value = routing.task_json(task, record.value)
                messages.append((referrals, task.case_key.encode(), value))
            routed.append(routing)
        await produce_all(self._producer, messages)
        self._count(routed, refused)

    def is_transient(self, error: BaseException) -> bool:
        return broker_unavailable(error)

    async def park(self, record: Record, error: BaseException, tries: int) -> bool:
        """A flag the router failed on again and again: said so on the dead-letter topic."""
        refusal = unprocessable(record.value, flag_id_in(record.value), type(error).__name__)
        letter = dead_letter(record, refusal, group=self._settings.router_group, now=self._clock())
        await produce_all(
            self._producer, [(self._settings.topic_dlq, None, letter.model_dump_json().encode())]
        )
        self._count([], [(record.topic, refusal.reason.value)])
        return True

    def _count(self, routed: list[Routing], refused: list[tuple[str, str]]) -> None:
        """Count a batch: each labelled counter once, by how many (a label lookup per flag would
        cost more than routing it); each stage time observed. Flags that got the same verdict
        (one object, from the policy's memo) are counted together."""
        m = self._metrics
        flags: Counter[str] = Counter()
        decisions: Counter[tuple[str, str, str]] = Counter()
        tasks: Counter[tuple[str, str]] = Counter()
        for topic, reason in refused:
            flags["rejected"] += 1
            m.dlq_messages.labels(topic, reason).inc()
        by_verdict: Counter[int] = Counter()
        shown: dict[int, Decision] = {}  # a decision of each verdict: what its flags got
        routed_seconds: dict[str, list[float]] = {}
        for routing in routed:  # enums are str: their members count as their values
            by_verdict[id(routing.verdict)] += 1
            shown.setdefault(id(routing.verdict), routing.decision)
            for task in routing.tasks:
                tasks[task.destination.kind, task.priority] += 1
                routed_seconds.setdefault(task.priority, []).append(
                    max((task.routed_at - task.detected_at).total_seconds(), 0.0)
                )
        for verdict, n in by_verdict.items():
            decision = shown[verdict]
            flags[decision.outcome] += n
            established: list[str] = [*decision.criteria] or ["none"]
            for name in established:
                decisions[decision.outcome, name, "active"] += n
            shadow = _with_shadow_rules(decision)
            if shadow is not None:
                outcome, shadowed = shadow
                for name in shadowed:
                    decisions[outcome, name, "shadow"] += n
        for flag_outcome, count in flags.items():
            m.router_flags.labels(flag_outcome).inc(count)
        for (outcome, name, mode), count in decisions.items():
            m.router_decisions.labels(outcome, name, mode).inc(count)
        for (kind, priority), count in tasks.items():
            m.referral_tasks.labels(kind, priority).inc(count)
        for priority, seconds in routed_seconds.items():
            histogram = m.stage_seconds.labels("detected_to_routed", priority)
            for value in seconds:
                histogram.observe(value)


def _with_shadow_rules(decision: Decision) -> tuple[str, list[str]] | None:
    """The outcome and criteria the flag would get were its shadow rules active, when one fired.

    Counted once per flag and criterion, as active decisions are, so `mode="shadow"` reads as
    "flags a shadow rule fired on, by what they would then get": not once per shadow rule.
    """
    if not any(rule.mode == "shadow" for rule in decision.rules):
        return None
    outcome = "refer" if any(rule.outcome == "refer" for rule in decision.rules) else "review"
    criteria = sorted({c.value for rule in decision.rules for c in rule.criteria})
    return outcome, criteria


async def run(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run the router until SIGTERM/SIGINT (or `stop`)."""
    policy, directory = startup_checks(settings)
    listed = organisations(settings)
    log.info(
        "reporting policy loaded",
        extra={"policy_version": policy.version, "rules": len(policy.rules)},
    )
    stop = stop or asyncio.Event()
    stop_on_signals(stop)
    metrics = Metrics(CollectorRegistry())
    health = consumer_health(settings)
    health_module.serve(metrics.registry, health, settings.api_host, settings.router_metrics_port)

    def build(producer: AIOKafkaProducer) -> BatchHandler:
        return FlagRouter(
            producer,
            settings=settings,
            metrics=metrics,
            policy=policy,
            directory=directory,
            organisations=listed,
        )

    await run_consumer_service(
        settings,
        group=settings.router_group,
        topics=[settings.topic_flags],
        metrics=metrics,
        build_handler=build,
        stop=stop,
        health=health,
    )
