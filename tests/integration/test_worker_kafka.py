"""The referral worker against the real broker and database: offsets follow the transaction."""

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas.referral import RejectedMessage
from services.pipeline.kafka import BatchHandler, Record, new_producer, run_consumer_service
from services.pipeline.metrics import Metrics
from services.pipeline.settings import Settings
from services.referral import queries, store
from services.referral.database import new_engine, new_sessionmaker
from services.referral.worker import TaskRecorder
from tests.factories import make_flag, signal
from tests.integration.test_cases_store import NOW, PACKETS, routed
from tests.kafka_reading import committed_and_end, read_topic, wait_for_commit


def recorder(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    metrics: Metrics,
    hold: Callable[[], Awaitable[None]] | None = None,
) -> Callable[[AIOKafkaProducer], BatchHandler]:
    """The worker's handler; with `hold`, one that awaits it after storing each batch."""

    class Held(TaskRecorder):
        async def __call__(self, records: Sequence[Record]) -> None:
            await super().__call__(records)
            if hold is not None:
                await hold()

    def build(producer: AIOKafkaProducer) -> BatchHandler:
        kind = Held if hold else TaskRecorder
        return kind(producer, sessions=sessions, settings=settings, metrics=metrics)

    return build


async def run_worker_until(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    metrics: Metrics,
    done: Callable[[], Awaitable[None]],
    hold: Callable[[], Awaitable[None]] | None = None,
) -> None:
    stop = asyncio.Event()
    running = asyncio.create_task(
        run_consumer_service(
            settings,
            group=settings.referral_group,
            topics=[settings.topic_referrals, settings.topic_decisions],
            metrics=metrics,
            build_handler=recorder(settings, sessions, metrics, hold),
            stop=stop,
        )
    )
    try:
        await done()
    finally:
        stop.set()
        await asyncio.wait_for(running, timeout=30)


async def produce(settings: Settings, messages: list[tuple[str, bytes, bytes]]) -> None:
    producer = new_producer(settings)
    await producer.start()
    try:
        for topic, key, value in messages:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def test_offsets_are_committed_only_after_the_cases_are_stored(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    routing = routed(make_flag(signals=[signal("coercion", 0.9)]))
    (task,) = routing.tasks
    lost = routed(make_flag(signals=[signal("grooming", 0.95)]), home_force_id="no-such-force")
    (unaddressable,) = lost.tasks
    await produce(
        settings,
        [
            (settings.topic_referrals, task.case_key.encode(), task.model_dump_json().encode()),
            (settings.topic_referrals, b"k", b'{"schema_version": 1, "task_id": "x"}'),
            (settings.topic_referrals, b"k", unaddressable.model_dump_json().encode()),
            (
                settings.topic_decisions,
                str(routing.decision.flag_id).encode(),
                routing.decision.model_dump_json().encode(),
            ),
        ],
    )

    # 1. The database is unreachable: the batch fails, is retried, and no offset is committed.
    unreachable = make_url(settings.database_url).set(database="csae_no_such_database")
    broken_engine = new_engine(unreachable.render_as_string(hide_password=False))
    broken = Metrics(CollectorRegistry())

    async def until_failed_twice() -> None:
        deadline = time.monotonic() + 30
        while (
            broken.registry.get_sample_value(
                "csae_batch_failures_total", {"group": settings.referral_group}
            )
            or 0
        ) < 2:
            assert time.monotonic() < deadline, "the worker never tried the batch"
            await asyncio.sleep(0.1)

    try:
        await run_worker_until(
            settings, new_sessionmaker(broken_engine), broken, until_failed_twice
        )
    finally:
        await broken_engine.dispose()
    committed, _ = await committed_and_end(
        settings, settings.topic_referrals, settings.referral_group
    )
    assert committed == 0
    async with sessions() as session:
        assert await queries.cases_for_flag(session=session, flag_id=task.flag_id) == []

    # 2. With the database back, the same messages are read again and stored; then committed.
    healthy = Metrics(CollectorRegistry())

    async def until_committed() -> None:
        await wait_for_commit(settings, settings.topic_referrals, settings.referral_group, 3)
        await wait_for_commit(settings, settings.topic_decisions, settings.referral_group, 1)

    await run_worker_until(settings, sessions, healthy, until_committed)
    async with sessions() as session:
        case_ids = await queries.cases_for_flag(session=session, flag_id=task.flag_id)
        decision = await queries.get_decision(session=session, flag_id=task.flag_id)
    assert len(case_ids) == 1
    assert decision is not None
    assert decision.outcome == "refer"

    (letter,) = [
        RejectedMessage.model_validate_json(r.value)
        for r in await read_topic(settings, settings.topic_dlq, 1)
    ]
    assert (letter.topic, letter.errors[0].type) == (settings.topic_referrals, "uuid_parsing")
    assert letter.consumer_group == settings.referral_group

    # A force the router knew but this directory does not: the referral is kept, not refused.
    async with sessions() as session:
        (kept,) = await queries.cases_for_flag(session=session, flag_id=unaddressable.flag_id)
        packet = await store.packet(
            session=session, case_id=kept, version=1, config=PACKETS, now=NOW
        )
    assert packet is not None
    assert packet.body["authority"]["id"] == "no-such-force"
