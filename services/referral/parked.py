"""Parked messages: the ones the worker could not store. List them; once their cause is fixed,
replay them from Kafka through the same handler the worker uses (`csae parked list|replay`)."""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry
from sqlalchemy import select, update

from schemas.referral import Decision, ReferralTask
from services.pipeline.decode import Refusal, decode
from services.pipeline.kafka import client_options, new_producer
from services.pipeline.metrics import Metrics
from services.pipeline.settings import Settings
from services.pipeline.startup import startup_checks
from services.referral.database import new_engine, new_sessionmaker, one_session
from services.referral.escalation import Escalator
from services.referral.models import ParkedMessage
from services.referral.worker import TaskRecorder, utc_now

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Replayed:
    """What replaying one parked message did: `stored`, `failed` (with the error's type),
    `refused` (its contract refuses it now: with the reason) or `gone` (the topic no longer holds
    the offset: its retention passed). Only a stored one is marked resolved."""

    message: ParkedMessage
    outcome: str
    error: str | None = None
    breaches: tuple[tuple[str, str], ...] = ()
    """SLA breaches (priority, stage) the stored task made: late by now, most likely. They are
    said here: a replay runs outside the worker, whose counters page on breaches."""


def _breaches(metrics: Metrics) -> tuple[tuple[str, str], ...]:
    found = []
    for family in metrics.sla_breaches.collect():
        for sample in family.samples:
            if sample.name.endswith("_total") and sample.value > 0:
                found += [(sample.labels["priority"], sample.labels["stage"])] * int(sample.value)
    return tuple(found)


async def unresolved(settings: Settings) -> list[ParkedMessage]:
    """The parked messages nobody has resolved yet, oldest first."""
    async with one_session(settings.database_url) as session:
        rows = await session.scalars(
            select(ParkedMessage)
            .where(ParkedMessage.resolved_at.is_(None))
            .order_by(ParkedMessage.parked_at, ParkedMessage.offset)
        )
        return list(rows.all())


async def replay(settings: Settings, clock: Callable[[], datetime] = utc_now) -> list[Replayed]:
    """Fetch each unresolved parked message from its topic and store it as the worker would;
    mark it resolved when that succeeds. A message that fails again stays parked."""
    parked = await unresolved(settings)
    if not parked:
        return []
    engine = new_engine(settings.database_url)
    sessions = new_sessionmaker(engine)
    policy, directory = startup_checks(settings)
    escalator = Escalator(policy, directory, settings.home_force_id, settings.sla_deadlines)
    producer = new_producer(settings)
    consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False)
    await producer.start()
    await consumer.start()
    done: list[Replayed] = []
    try:
        for message in parked:
            metrics = Metrics(CollectorRegistry())
            recorder = TaskRecorder(
                producer,
                sessions=sessions,
                settings=settings,
                metrics=metrics,
                escalator=escalator,
                clock=clock,
            )
            tp = TopicPartition(message.topic, message.partition)
            consumer.assign([tp])
            consumer.seek(tp, message.offset)
            batch = await consumer.getmany(tp, timeout_ms=10_000, max_records=1)
            records = [r for r in batch.get(tp, []) if r.offset == message.offset]
            if not records:
                done.append(Replayed(message, "gone"))
                continue
            model = ReferralTask if message.topic == settings.topic_referrals else Decision
            refusal = decode(records[0].value, model, max_bytes=settings.max_flag_bytes * 2)
            if isinstance(refusal, Refusal):
                done.append(Replayed(message, "refused", refusal.reason.value))
                continue
            try:
                await recorder(records)
            except Exception as exc:  # reported; the message stays parked for another try
                done.append(Replayed(message, "failed", type(exc).__name__))
                continue
            async with sessions() as session, session.begin():
                await session.execute(
                    update(ParkedMessage)
                    .where(
                        ParkedMessage.topic == message.topic,
                        ParkedMessage.partition == message.partition,
                        ParkedMessage.offset == message.offset,
                    )
                    .values(resolved_at=clock())
                )
            done.append(Replayed(message, "stored", breaches=_breaches(metrics)))
            log.info(
                "parked message replayed",
                extra={
                    "topic": message.topic,
                    "partition": message.partition,
                    "offset": message.offset,
                },
            )
    finally:
        await consumer.stop()
        await producer.stop()
        await engine.dispose()
    return done
