"""The referral path never stops and never loses a referral, on the real broker and database:
a poison message is parked while the P0s behind it are stored; a database crash right after a
commit loses nothing acknowledged; rebalances are ordinary; one task has one effect; the lag is
read from the broker; topics grow to their partition count."""

import asyncio
import inspect
import os
import signal as signals
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas.referral import DestinationKind, Priority, ReferralTask, RejectedMessage
from services.pipeline.kafka import client_options, ensure_topics, new_producer
from services.pipeline.metrics import Metrics
from services.pipeline.settings import Settings
from services.referral import store
from services.referral.database import new_engine, new_sessionmaker, upgrade
from services.referral.models import Case, ParkedMessage, Task
from services.referral.parked import replay, unresolved
from services.referral.worker import SlaSweeper
from tests.e2e.test_pipeline import CSAE, _environment
from tests.factories import make_flag, signal
from tests.infra import delete_topics, isolated_settings
from tests.integration.test_cases_store import NOW, routed
from tests.integration.test_worker_kafka import run_worker_until
from tests.kafka_reading import committed_and_end, read_topic, wait_for_commit

ROOT = Path(__file__).resolve().parents[2]


def p0_tasks(count: int, org_id: str = "org-test") -> list[ReferralTask]:
    """One P0 police task per flag, each about a subject of its own (one flag per case)."""
    tasks = []
    for _ in range(count):
        flag = make_flag(
            subject={"account_id": f"acct-path-{uuid4().hex[:12]}"},
            platform={"org_id": org_id, "service": "chat", "country": "GB"},
            signals=[signal("safety", 0.9, immediate_danger=True)],
            child={"location": {"country": "GB", "postcode_district": "CV1"}},
        )
        (task,) = [t for t in routed(flag).tasks if t.destination.kind is DestinationKind.POLICE]
        assert task.priority is Priority.P0
        tasks.append(task)
    return tasks


async def produce_tasks(
    settings: Settings, tasks: list[ReferralTask], *, partition: int | None = None
) -> None:
    producer = new_producer(settings)
    await producer.start()
    try:
        sent = [
            await producer.send(
                settings.topic_referrals,
                t.model_dump_json().encode(),
                key=t.case_key.encode(),
                partition=partition,
            )
            for t in tasks
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def stored_task_ids(sessions: async_sessionmaker[AsyncSession]) -> set[Any]:
    async with sessions() as session:
        return set((await session.scalars(select(Task.task_id))).all())


async def until(
    check: Callable[[], bool | Awaitable[bool]], what: str, within: float = 60.0
) -> None:
    """Poll `check` until it holds; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while not await _value(check()):
        assert time.monotonic() < deadline, f"{what}: not within {within} s"
        await asyncio.sleep(0.05)


@pytest.fixture
async def own_settings(own_database_url: str) -> AsyncIterator[Settings]:
    """Topics and groups of the test's own, over a database of its own."""
    s = isolated_settings(own_database_url, lag_interval_seconds=0.5)
    await ensure_topics(s)
    yield s
    await delete_topics(s)


async def test_a_poison_task_is_parked_and_the_p0_tasks_behind_it_are_stored(
    own_settings: Settings, own_sessions: async_sessionmaker[AsyncSession]
) -> None:
    # A row the database refuses whatever is tried (as a NUL or an out-of-range value would
    # be): the contract lets it through, the table does not.
    async with own_sessions() as session, session.begin():
        await session.execute(
            text("ALTER TABLE flags ADD CONSTRAINT test_poison CHECK (org_id <> 'org-poison')")
        )
    before, after = p0_tasks(5), p0_tasks(5)
    (poison,) = p0_tasks(1, org_id="org-poison")
    # All on one partition, the poison in the middle: nothing behind it may wait for it.
    await produce_tasks(own_settings, [*before, poison, *after], partition=0)
    metrics = Metrics(CollectorRegistry())
    group = own_settings.referral_group

    async def until_committed() -> None:
        committed = await wait_for_commit(
            own_settings, own_settings.topic_referrals, group, 11, within=60
        )
        assert committed == 11, "the partition is blocked behind the poison message"

    await run_worker_until(own_settings, own_sessions, metrics, until_committed)

    stored = await stored_task_ids(own_sessions)
    assert {t.task_id for t in [*before, *after]} <= stored, "every P0 is stored"
    assert poison.task_id not in stored
    async with own_sessions() as session:
        (parked,) = (await session.scalars(select(ParkedMessage))).all()
    assert (parked.topic, parked.partition, parked.offset) == (own_settings.topic_referrals, 0, 5)
    assert (parked.error_type, parked.tries) == ("IntegrityError", own_settings.poison_tries)
    assert parked.flag_id == poison.flag_id, "the person looking at it can find the flag"
    (letter,) = [
        RejectedMessage.model_validate_json(r.value)
        for r in await read_topic(own_settings, own_settings.topic_dlq, 1)
    ]
    assert (letter.offset, letter.reason.value, letter.sha256) == (
        5,
        "unprocessable",
        parked.sha256,
    )
    assert "org-poison" not in letter.model_dump_json(), "nothing the sender wrote"
    assert (
        metrics.registry.get_sample_value(
            "csae_unprocessable_total", {"group": group, "topic": own_settings.topic_referrals}
        )
        == 1
    )

    # It pages while it waits: every worker's sweep reads the parked count.
    sweeper = SlaSweeper(sessions=own_sessions, metrics=metrics)
    await sweeper.sweep_once()
    assert metrics.registry.get_sample_value("csae_parked_messages") == 1

    # The cause fixed, a person replays it: stored, and the parked row marked resolved.
    async with own_sessions() as session, session.begin():
        await session.execute(text("ALTER TABLE flags DROP CONSTRAINT test_poison"))
    (replayed,) = await replay(own_settings)
    assert (replayed.outcome, replayed.message.offset) == ("stored", 5)
    assert poison.task_id in await stored_task_ids(own_sessions)
    assert await unresolved(own_settings) == []
    await sweeper.sweep_once()
    assert metrics.registry.get_sample_value("csae_parked_messages") == 0


async def test_messages_failing_one_after_another_block_instead_of_all_being_parked(
    own_settings: Settings, own_sessions: async_sessionmaker[AsyncSession]
) -> None:
    """A bug of ours or a schema out of step fails every message: after a few parked in a row
    with none stored between, the worker stops parking, blocks, and pages (batch failures)."""
    async with own_sessions() as session, session.begin():
        await session.execute(text("ALTER TABLE flags ADD CONSTRAINT test_all CHECK (false)"))
    tasks = p0_tasks(12)
    await produce_tasks(own_settings, tasks, partition=0)
    metrics = Metrics(CollectorRegistry())
    group = own_settings.referral_group

    async def until_blocked() -> None:
        await until(
            lambda: (
                (
                    metrics.registry.get_sample_value("csae_batch_failures_total", {"group": group})
                    or 0
                )
                >= 3
            ),
            "the worker blocked",
        )

    await run_worker_until(own_settings, own_sessions, metrics, until_blocked)
    async with own_sessions() as session:
        parked = await store.unresolved_parked(session=session)
    limit = own_settings.parked_in_a_row_limit
    assert parked == limit, "a few parked, then no more"
    committed, _ = await committed_and_end(own_settings, own_settings.topic_referrals, group)
    assert committed == 0, "the batch holding them is fetched again once the cause is fixed"


async def test_a_database_that_is_down_blocks_and_retries_and_is_never_dead_lettered(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    tasks = p0_tasks(3)
    await produce_tasks(settings, tasks)
    unreachable = make_url(settings.database_url).set(database="csae_no_such_database")
    broken = new_engine(unreachable.render_as_string(hide_password=False))
    metrics = Metrics(CollectorRegistry())

    async def until_retried() -> None:
        await until(
            lambda: (
                (
                    metrics.registry.get_sample_value(
                        "csae_batch_failures_total", {"group": settings.referral_group}
                    )
                    or 0
                )
                >= 3
            ),
            "the worker retried",
        )

    try:
        await run_worker_until(settings, new_sessionmaker(broken), metrics, until_retried)
    finally:
        await broken.dispose()
    committed, _ = await committed_and_end(
        settings, settings.topic_referrals, settings.referral_group
    )
    assert committed == 0
    assert (
        metrics.registry.get_sample_value(
            "csae_unprocessable_total",
            {"group": settings.referral_group, "topic": settings.topic_referrals},
        )
        or 0
    ) == 0
    # Not even tried as a message's fault: no message was isolated for parking.
    assert "parked" not in caplog.text
    _, dlq_end = await committed_and_end(settings, settings.topic_dlq, settings.referral_group)
    assert dlq_end == 0, "a transient fault is never dead-lettered"


async def _value(result: bool | Awaitable[bool]) -> bool:
    return await result if inspect.isawaitable(result) else result


async def test_two_transactions_applying_one_task_make_one_version(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    subject = {"account_id": f"acct-twice-{uuid4().hex[:8]}"}
    first = list(routed(make_flag(subject=subject, signals=[signal("coercion", 0.9)])).tasks)
    again = list(routed(make_flag(subject=subject, signals=[signal("coercion", 0.95)])).tasks)
    async with sessions() as session, session.begin():
        (opened,) = await store.apply_tasks(session=session, tasks=first, now=NOW)

    async with sessions() as a, sessions() as b:
        await a.begin()
        applied_a = await store.apply_tasks(session=a, tasks=again, now=NOW)
        waiting = asyncio.create_task(_apply_in(b, again))

        async def b_waits_for_a() -> bool:
            async with sessions() as probe:
                waits = await probe.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND datname = current_database()"
                    )
                )
            return bool(waits)

        await until(b_waits_for_a, "the second transaction waits on the first's lock", 30)
        await a.commit()
        applied_b = await asyncio.wait_for(waiting, timeout=30)

    assert len(applied_a) == 1
    assert applied_b == [], "the task was applied by the first transaction"
    async with sessions() as session:
        case = await session.get(Case, opened.case_id)
        tasks = await session.scalar(
            select(func.count()).select_from(Task).where(Task.case_id == opened.case_id)
        )
    assert case is not None
    assert (case.packet_version, case.flag_count, tasks) == (2, 2, 2)


async def _apply_in(session: AsyncSession, tasks: list[ReferralTask]) -> list[store.AppliedTask]:
    async with session.begin():
        return await store.apply_tasks(session=session, tasks=tasks, now=NOW)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _postgres(command: str, env: dict[str, str]) -> None:
    subprocess.run(
        [str(ROOT / "deploy/local/postgres.sh"), command], env=env, check=True, capture_output=True
    )


async def test_nothing_acknowledged_is_lost_when_the_database_crashes_after_a_commit(
    tmp_path: Path,
) -> None:
    """The server runs with synchronous_commit off (as the test suite's own cluster does): only
    the worker's own `SET LOCAL synchronous_commit = on` keeps a commit's WAL from being lost
    when PostgreSQL stops at once (`pg_ctl stop -m immediate`) right after it."""
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{_free_port()}/csae"
    env = {
        **os.environ,
        "CSAE_LOCAL_DIR": str(tmp_path / "pg"),
        "CSAE_DATABASE_URL": url,
        "CSAE_POSTGRES_UNSAFE_FOR_TESTS": "1",
        # The WAL writer would flush an asynchronous commit within 200 ms by itself: slowed
        # down, only the worker's own synchronous commit can have put it on disk.
        "CSAE_POSTGRES_OPTIONS": "-c wal_writer_delay=10s",
    }
    await asyncio.to_thread(_postgres, "start", env)
    try:
        await asyncio.to_thread(upgrade, url)
        settings = isolated_settings(url)
        await ensure_topics(settings)
        tasks = p0_tasks(1500)
        await produce_tasks(settings, tasks)
        engine = new_engine(url)
        sessions = new_sessionmaker(engine)
        crashed = asyncio.Event()

        async def crash_right_after_a_commit() -> None:
            async def some_committed() -> bool:
                done, _ = await committed_and_end(
                    settings, settings.topic_referrals, settings.referral_group
                )
                return done >= 200

            await until(some_committed, "the worker committed offsets")
            await asyncio.to_thread(_postgres, "crash", env)
            crashed.set()

        try:
            await run_worker_until(
                settings, sessions, Metrics(CollectorRegistry()), crash_right_after_a_commit
            )
        finally:
            await engine.dispose()
        assert crashed.is_set()
        await asyncio.to_thread(_postgres, "start", env)
        acknowledged = await _acknowledged(settings)
        engine = new_engine(url)
        try:
            stored = await stored_task_ids(new_sessionmaker(engine))
        finally:
            await engine.dispose()
        assert acknowledged, "nothing was committed before the crash"
        assert acknowledged - stored == set(), "acknowledged referrals were lost in the crash"
        await delete_topics(settings)
    finally:
        await asyncio.to_thread(_postgres, "stop", env)


async def _acknowledged(settings: Settings) -> set[Any]:
    """The task ids of every message below the group's committed offset, per partition."""
    topic = settings.topic_referrals
    partitions = [TopicPartition(topic, p) for p in range(settings.kafka_topic_partitions)]
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(
            settings.referral_group, partitions=partitions
        )
    finally:
        await admin.close()
    committed = {tp: meta.offset for tp, meta in offsets.items() if meta.offset > 0}
    ids: set[Any] = set()
    for record in await read_topic(settings, topic, 1500):
        tp = TopicPartition(record.topic, record.partition)
        if record.offset < committed.get(tp, 0):
            ids.add(ReferralTask.model_validate_json(record.value).task_id)
    return ids


async def test_a_second_worker_joining_mid_stream_loses_nothing_and_adds_no_version(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    tasks = p0_tasks(1200)
    await produce_tasks(settings, tasks)
    # Small batches, and a first worker that waits after each batch until the second has joined
    # the group and holds partitions: the second joins mid-stream, however fast the first is.
    settings = settings.model_copy(update={"batch_max_records": 20})
    first_metrics, second_metrics = Metrics(CollectorRegistry()), Metrics(CollectorRegistry())

    batches = 0

    async def until_the_second_holds_partitions() -> None:
        nonlocal batches
        batches += 1
        if batches == 1:  # the first batch goes on to be committed: the second waits for that
            return

        async def holds() -> bool:
            owned = _sample(
                second_metrics,
                "csae_consumer_assigned_partitions",
                {"group": settings.referral_group},
            )
            return bool(owned)

        await until(holds, "the second worker holds partitions")

    async def join_midway_then_finish() -> None:
        async def started() -> bool:
            done, _ = await committed_and_end(
                settings, settings.topic_referrals, settings.referral_group
            )
            return done > 0

        await until(started, "the first worker committed")

        async def all_committed() -> None:
            committed = await wait_for_commit(
                settings, settings.topic_referrals, settings.referral_group, len(tasks), within=90
            )
            assert committed == len(tasks)

        await run_worker_until(settings, sessions, second_metrics, all_committed)

    await run_worker_until(
        settings,
        sessions,
        first_metrics,
        join_midway_then_finish,
        hold=until_the_second_holds_partitions,
    )
    assert _written(first_metrics) > 0
    assert _written(second_metrics) > 0, "the second worker took partitions mid-stream"

    ids = {t.task_id for t in tasks}
    assert ids <= await stored_task_ids(sessions)
    async with sessions() as session:
        versions = (
            await session.execute(
                select(Case.packet_version, Case.flag_count).where(
                    Case.case_key.in_([t.case_key for t in tasks])
                )
            )
        ).all()
    assert len(versions) == len(tasks)
    assert set(versions) == {(1, 1)}, "a redelivered task made no extra version"


def _sample(metrics: Metrics, name: str, labels: dict[str, str]) -> float | None:
    value: float | None = metrics.registry.get_sample_value(name, labels)
    return value


def _written(metrics: Metrics) -> float:
    return sum(
        sample.value
        for family in metrics.cases_written.collect()
        for sample in family.samples
        if sample.name.endswith("_total")
    )


async def test_a_worker_paused_past_its_session_resumes_without_crashing(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    env = _environment(settings)
    with (tmp_path / "worker.log").open("wb") as log:
        paused = subprocess.Popen(  # noqa: ASYNC220  (started once; the test awaits it)
            [CSAE, "referral", "worker"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        early = p0_tasks(50)
        await produce_tasks(settings, early)
        await until(
            lambda: _contains(sessions, {t.task_id for t in early}), "the worker stored the tasks"
        )
        paused.send_signal(signals.SIGSTOP)
        later = p0_tasks(300)
        await produce_tasks(settings, later)
        metrics = Metrics(CollectorRegistry())

        async def take_over_then_resume_the_paused_one() -> None:
            # The paused member's session times out; this one takes every partition.
            committed = await wait_for_commit(
                settings, settings.topic_referrals, settings.referral_group, 350, within=90
            )
            assert committed == 350
            paused.send_signal(signals.SIGCONT)
            last = p0_tasks(100)
            await produce_tasks(settings, last)
            committed = await wait_for_commit(
                settings, settings.topic_referrals, settings.referral_group, 450, within=90
            )
            assert committed == 450

        await run_worker_until(settings, sessions, metrics, take_over_then_resume_the_paused_one)
        assert paused.poll() is None, (tmp_path / "worker.log").read_text()
        assert {t.task_id for t in [*early, *later]} <= await stored_task_ids(sessions)
    finally:
        paused.send_signal(signals.SIGCONT)
        paused.send_signal(signals.SIGTERM)
        code = paused.wait(timeout=60)
    assert code == 0, (tmp_path / "worker.log").read_text()
    assert "Traceback" not in (tmp_path / "worker.log").read_text()


async def _contains(sessions: async_sessionmaker[AsyncSession], ids: set[Any]) -> bool:
    return ids <= await stored_task_ids(sessions)


async def test_the_lag_gauge_rises_while_the_worker_is_stuck(settings: Settings) -> None:
    stuck = isolated_settings(settings.database_url, lag_interval_seconds=0.2)
    await ensure_topics(stuck)
    await produce_tasks(stuck, p0_tasks(30))
    unreachable = make_url(stuck.database_url).set(database="csae_no_such_database")
    broken = new_engine(unreachable.render_as_string(hide_password=False))
    metrics = Metrics(CollectorRegistry())
    labels = {"group": stuck.referral_group, "topic": stuck.topic_referrals}

    async def until_lag_seen() -> None:
        await until(
            lambda: metrics.registry.get_sample_value("csae_consumer_lag", labels) == 30,
            "the lag gauge shows the 30 messages not committed",
        )

    try:
        await run_worker_until(stuck, new_sessionmaker(broken), metrics, until_lag_seen)
    finally:
        await broken.dispose()
        await delete_topics(stuck)


async def test_topics_with_fewer_partitions_are_grown(database_url: str) -> None:
    few = isolated_settings(database_url, kafka_topic_partitions=3)
    await ensure_topics(few)
    grown = few.model_copy(update={"kafka_topic_partitions": 12})
    await ensure_topics(grown)
    admin = AIOKafkaAdminClient(**client_options(grown))
    await admin.start()

    async def grown_to_12() -> bool:  # the broker's metadata follows the change shortly
        described = await admin.describe_topics([grown.topic_flags, grown.topic_referrals])
        return sorted(len(d["partitions"]) for d in described) == [12, 12]

    try:
        await until(grown_to_12, "every topic has 12 partitions", 30)
    finally:
        await admin.close()
        await delete_topics(grown)
