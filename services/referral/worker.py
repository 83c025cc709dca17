"""The referral worker's Kafka edge: tasks and decisions in, one database transaction per batch."""

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas.referral import Decision, ReferralTask, RejectionReason
from services.domain.breaker import BreakerSettings, source_label, source_of
from services.pipeline import health as health_module
from services.pipeline.decode import Refusal, decode, flag_id_in, unprocessable
from services.pipeline.decode import refused as refusal
from services.pipeline.dlq import dead_letter
from services.pipeline.health import ConsumerHealth
from services.pipeline.kafka import (
    HEALTH_CHECK_TIMEOUT,
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
from services.referral import breakers, retention, store, sweep
from services.referral.database import new_engine, new_sessionmaker, transient_database_error
from services.referral.escalation import Escalator
from services.referral.models import ParkedMessage

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


class TaskRecorder:
    """Handles one batch of tasks and decisions: one transaction, then the dead letters."""

    def __init__(
        self,
        producer: AIOKafkaProducer,
        *,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        metrics: Metrics,
        escalator: Escalator | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._producer = producer
        self._sessions = sessions
        self._settings = settings
        self._metrics = metrics
        self._escalator = escalator
        self._clock = clock
        self._shard = random.randrange(64)  # noqa: S311 (spreading rows, not secrecy)
        """This worker's rows of the flood breaker's counts (see `breakers.count`)."""

    async def __call__(self, records: Sequence[Record]) -> None:
        s = self._settings
        now = self._clock()
        tasks: list[ReferralTask] = []
        decisions: list[Decision] = []
        letters: list[tuple[str, bytes | None, bytes]] = []
        refused: list[tuple[str, str]] = []
        # A task embeds its flag, so it may be somewhat larger than the flag cap.
        cap = s.max_flag_bytes * 2
        for record in records:
            model: type[ReferralTask] | type[Decision] = (
                ReferralTask if record.topic == s.topic_referrals else Decision
            )
            result = decode(record.value, model, max_bytes=cap)
            if isinstance(result, ReferralTask) and result.escalation is not None:
                # Made by the worker from a case's flags, never sent: one that arrives would
                # slip past the flood breaker's count and set an escalation's metric label.
                result = refusal(
                    record.value,
                    result.flag_id,
                    RejectionReason.INVALID,
                    "an escalation's task is made by the referral worker, never sent to it",
                )
            if isinstance(result, Refusal):
                letter = dead_letter(record, result, group=s.referral_group, now=now)
                letters.append((s.topic_dlq, None, letter.model_dump_json().encode()))
                refused.append((record.topic, result.reason.value))
            elif isinstance(result, ReferralTask):
                tasks.append(result)
            else:
                decisions.append(result)
        # The database first: its writes are idempotent, so when the dead letters fail to send,
        # the retry repeats nothing; and while the database is down, no dead letter is repeated.
        async with self._sessions() as session, session.begin():
            await store.enable_durable_commit(session)
            await store.record_decisions(session=session, decisions=decisions)
            applied = await store.apply_tasks(
                session=session,
                tasks=tasks,
                deadlines=s.sla_deadlines,
                now=now,
                escalator=self._escalator,
                breaker=s.breaker(),
                shard=self._shard,
            )
        # Counted as soon as stored: a retry after a failed send below finds these tasks
        # stored, and their breaches marked, so it would never count them.
        m = self._metrics
        for item in applied:
            m.cases_written.labels(item.task.destination.kind.value, item.status.value).inc()
            if item.supplement:
                m.supplements.labels(item.task.destination.kind.value).inc()
            if item.task.escalation is not None:
                m.case_escalations.labels(item.task.escalation, item.task.priority.value).inc()
            if item.held or item.passed:
                source = source_label(source_of(item.task))
                (m.breaker_held if item.held else m.breaker_passed).labels(source).inc()
            for priority, stage in item.breaches:
                m.sla_breaches.labels(priority.value, stage.value).inc()
            if item.became_ready:
                m.stage_seconds.labels("routed_to_ready", item.task.priority.value).observe(
                    max((now - item.task.routed_at).total_seconds(), 0.0)
                )
        if letters:
            await produce_all(self._producer, letters)
        for topic, reason in refused:
            m.dlq_messages.labels(topic, reason).inc()
        if applied:
            log.info("tasks applied", extra={"tasks": len(applied), "decisions": len(decisions)})

    def is_transient(self, error: BaseException) -> bool:
        return broker_unavailable(error) or transient_database_error(error)

    async def park(self, record: Record, error: BaseException, tries: int) -> bool:
        """Keep the message for a person (parked table) and say why on the dead-letter topic."""
        s = self._settings
        now = self._clock()
        refusal = unprocessable(record.value, flag_id_in(record.value), type(error).__name__)
        letter = dead_letter(record, refusal, group=s.referral_group, now=now)
        async with self._sessions() as session, session.begin():
            await store.enable_durable_commit(session)
            new = await store.park(
                session=session,
                message=ParkedMessage(
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                    consumer_group=s.referral_group,
                    size=refusal.size,
                    sha256=refusal.sha256,
                    flag_id=refusal.flag_id,
                    error_type=type(error).__name__,
                    tries=tries,
                    parked_at=now,
                ),
            )
        # Sent again when re-parked (a send that failed last time is not lost), counted once.
        await produce_all(self._producer, [(s.topic_dlq, None, letter.model_dump_json().encode())])
        if new:
            self._metrics.dlq_messages.labels(record.topic, refusal.reason.value).inc()
        return new


class SlaSweeper:
    """Checks the SLA clocks of every case: sets the overdue gauge, counts new breaches once."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        metrics: Metrics,
        breaker: BreakerSettings | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._sessions = sessions
        self._metrics = metrics
        self._breaker = breaker
        self._clock = clock

    async def sweep_once(self) -> sweep.Sweep | None:
        """One sweep; None when another worker is sweeping now (this one skips the round).
        Every worker also reads how many parked messages wait for a person, and which flood
        breakers are open (closing those whose cool-down passed)."""
        async with self._sessions() as session, session.begin():
            self._metrics.parked_messages.set(await store.unresolved_parked(session=session))
            if self._breaker is not None:
                held = await breakers.sweep(session, self._clock(), self._breaker)
                self._metrics.breaker_open.clear()
                for source, value in held.items():
                    self._metrics.breaker_open.labels(source).set(value)
            found = await sweep.sweep_sla(session=session, now=self._clock())
        if found is None:
            # Another worker is sweeping: its gauge is the truth, and with max() over workers
            # a stale count here must not keep an alert firing.
            self._metrics.cases_overdue.clear()
            self._metrics.review_backlog.clear()
            self._metrics.review_oldest.clear()
            return None
        for (priority, stage), count in found.overdue.items():
            self._metrics.cases_overdue.labels(priority.value, stage.value).set(count)
        for priority, (waiting, oldest) in found.reviews.items():
            self._metrics.review_backlog.labels(priority.value).set(waiting)
            self._metrics.review_oldest.labels(priority.value).set(oldest)
        for priority, stage in found.breaches:
            self._metrics.sla_breaches.labels(priority.value, stage.value).inc()
        if found.breaches:
            log.warning("SLA breaches found", extra={"breaches": len(found.breaches)})
        self._metrics.sla_last_sweep.set(self._clock().timestamp())
        return found

    async def run(self, interval: float, stop: asyncio.Event) -> None:
        """Sweep every `interval` seconds until `stop`; a database failure waits for the next."""
        while not stop.is_set():
            try:
                await self.sweep_once()
            # Any failure: the sweep must outlive it, and its staleness is on a gauge.
            except Exception as exc:
                log.warning(
                    "SLA sweep failed; next in %ss", interval, extra={"error": type(exc).__name__}
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)


async def keep_retention(
    sessions: async_sessionmaker[AsyncSession],
    periods: retention.Periods,
    interval: float,
    stop: asyncio.Event,
    clock: Callable[[], datetime] = utc_now,
) -> None:
    """Delete and redact what is past its period every `interval` seconds (one worker at a
    time); a failure waits for the next round."""
    while not stop.is_set():
        try:
            async with sessions() as session, session.begin():
                done = await retention.run(session=session, now=clock(), periods=periods)
            if done:
                log.info(
                    "retention run",
                    extra={d.kind: d.rows for d in done},
                )
        except Exception as exc:  # the job must outlive any failure; the next round retries
            log.warning("retention run failed", extra={"error": type(exc).__name__})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)


async def watch_database(
    sessions: async_sessionmaker[AsyncSession],
    health: ConsumerHealth,
    interval: float,
    stop: asyncio.Event,
) -> None:
    """Every `interval`, tell `health` when the database answers `SELECT 1` (within
    HEALTH_CHECK_TIMEOUT): the worker's readiness. A failure is only the absence of an answer."""
    while not stop.is_set():
        try:
            async with asyncio.timeout(HEALTH_CHECK_TIMEOUT), sessions() as session:
                await session.execute(text("SELECT 1"))
            health.database_answered()
        except Exception as exc:  # any failure means no answer; readiness says since when
            log.info("database did not answer", extra={"error": type(exc).__name__})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)


async def run(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run the referral worker until SIGTERM/SIGINT (or `stop`)."""
    stop = stop or asyncio.Event()
    stop_on_signals(stop)
    metrics = Metrics(CollectorRegistry())
    health = consumer_health(settings, needs_database=True)
    health_module.serve(metrics.registry, health, settings.api_host, settings.worker_metrics_port)
    policy, directory = startup_checks(settings)
    escalator = Escalator(policy, directory, settings.home_force_id, settings.sla_deadlines)
    organisations(settings)  # a malformed directory stops every process at start
    engine = new_engine(settings.database_url)
    sessions = new_sessionmaker(engine)
    pool = engine.pool
    metrics.db_pool_in_use.set_function(lambda: float(getattr(pool, "checkedout", int)()))
    metrics.db_pool_size.set_function(lambda: float(getattr(pool, "size", int)()))

    def build(producer: AIOKafkaProducer) -> BatchHandler:
        return TaskRecorder(
            producer, sessions=sessions, settings=settings, metrics=metrics, escalator=escalator
        )

    sweeper = asyncio.create_task(
        SlaSweeper(sessions=sessions, metrics=metrics, breaker=settings.breaker()).run(
            settings.sla_sweep_seconds, stop
        )
    )
    checker = asyncio.create_task(
        watch_database(sessions, health, settings.lag_interval_seconds, stop)
    )
    keeper = (
        asyncio.create_task(
            keep_retention(
                sessions,
                retention.Periods(*settings.retention()),
                settings.retention_interval_seconds,
                stop,
            )
        )
        if settings.retention_enabled
        else None
    )
    try:
        await run_consumer_service(
            settings,
            group=settings.referral_group,
            topics=[settings.topic_referrals, settings.topic_decisions],
            metrics=metrics,
            build_handler=build,
            stop=stop,
            health=health,
        )
    finally:
        stop.set()
        await sweeper
        await checker
        if keeper is not None:
            await keeper
        await engine.dispose()
