"""`make bench`, second part: the pipeline on the real Kafka broker and PostgreSQL.

From one run:
1. the baseline: a plain aiokafka consume→produce passthrough of the flag backlog (consumer
   group, produce with acks=all and idempotence, commit once acknowledged), in this process
   (warm) and then as a process of its own from its start, as the router is measured;
2. one `csae router` process over the same backlog, from its start until its group has committed
   the end of the flags topic;
3. one `csae referral worker` process over what the router wrote, until its group has committed
   the end of the referrals and decisions topics;
4. publish→stored latency at a steady rate with router and worker running (rows polled);
5. stages 2 and 3 again with three `csae router` and three `csae referral worker` processes in
   their groups, on a copy of the backlog in topics and a database of their own;
6. the store's cost of one new flag on a case that holds many flags against one on a new case.

Completion is always read from the broker (committed offsets) or the database (rows), never
guessed. Each run has its own topics, consumer groups and database, removed at the end.
Synthetic flags only (tests/factories.py). Sizes from `CSAE_BENCH_*` (see `BenchSettings`).
"""

import asyncio
import json
import os
import signal as signals
import socket
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from benchmarks.passthrough import passthrough
from schemas.referral import ReferralTask
from services.domain.forces import uk_forces
from services.domain.policy import default_policy
from services.pipeline.kafka import (
    all_topics,
    client_options,
    ensure_topics,
    new_producer,
)
from services.pipeline.settings import Settings
from services.referral import store
from services.referral.database import new_engine, new_sessionmaker
from services.router.routing import route
from tests.factories import make_flag, police_referral, signal
from tests.infra import create_database, drop_database

CSAE = Path(sys.executable).with_name("csae")
PARTITIONS = 12
SCALED = 3
"""Processes of each stage in the scaled run."""
FLAGS_PER_SUBJECT = 4
FILL_BATCH = 200
POLL_SECONDS = 0.005
DURABILITY = ("fsync", "synchronous_commit", "full_page_writes")
# UK postcode districts of different forces: the child's location picks the police destination.
DISTRICTS = ("CV1", "ME14", "M1", "LS1", "CF10", "BS1", "NE1", "SW1A")


class BenchSettings(BaseSettings):
    """Sizes of the pipeline benchmark, from `CSAE_BENCH_*` environment variables."""

    model_config = SettingsConfigDict(env_prefix="CSAE_BENCH_", frozen=True, extra="ignore")

    flags: int = Field(default=20_000, ge=FLAGS_PER_SUBJECT)
    """The backlog for the throughput figures."""
    rate: float = Field(default=200.0, gt=0)
    """Flags per second published for the latency figure..."""
    seconds: float = Field(default=20.0, gt=0)
    """...for this long."""
    case_flags: int = Field(default=10_000, ge=FILL_BATCH)
    """Flags in the large case of the store-cost figure."""
    samples: int = Field(default=31, ge=3)
    """Single-flag applies timed on each kind of case (median)."""
    timeout: float = Field(default=180.0, gt=0)
    """Seconds each stage may take before it is reported as unfinished."""


# --- synthetic flags ---------------------------------------------------------------------------


def flag_bytes(run: str, subject: int, now: datetime) -> tuple[bytes, bytes]:
    """One synthetic flag (key, value): a clear sextortion-and-grooming signal about a child in
    the UK, which the default policy refers to the police force of the child's location."""
    district = DISTRICTS[subject % len(DISTRICTS)]
    document = police_referral(f"bench-{run}-{subject:07d}", district, now)
    return document["flag_id"].encode(), json.dumps(document).encode()


def backlog(run: str, count: int) -> list[tuple[bytes, bytes]]:
    """`count` flags, FLAGS_PER_SUBJECT about each subject, interleaved as they would arrive."""
    now = datetime.now(UTC)
    subjects = max(count // FLAGS_PER_SUBJECT, 1)
    return [flag_bytes(run, i % subjects, now) for i in range(count)]


# --- isolation: topics, groups, database, processes --------------------------------------------


def plain_dsn(url: str, database: str | None = None) -> str:
    """An asyncpg DSN for a SQLAlchemy URL, on `database` when given."""
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


async def durability(dsn: str) -> str:
    """The server's settings that decide what a commit costs: figures differ a lot without them."""
    connection = await asyncpg.connect(dsn)
    try:
        values = [f"{name} {await connection.fetchval(f'SHOW {name}')}" for name in DURABILITY]
        return ", ".join(values)
    finally:
        await connection.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def run_settings(run: str, database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        kafka_topic_partitions=PARTITIONS,
        topic_flags=f"bench.{run}.flags",
        topic_referrals=f"bench.{run}.referrals",
        topic_decisions=f"bench.{run}.decisions",
        topic_dlq=f"bench.{run}.dlq",
        router_group=f"bench-{run}-router",
        referral_group=f"bench-{run}-referral",
        router_metrics_port=free_port(),
        worker_metrics_port=free_port(),
        log_level="WARNING",
    )


def environment(settings: Settings) -> dict[str, str]:
    """The environment of a `csae` process with these settings."""
    return {
        **os.environ,
        "CSAE_DATABASE_URL": settings.database_url,
        "CSAE_TOPIC_FLAGS": settings.topic_flags,
        "CSAE_TOPIC_REFERRALS": settings.topic_referrals,
        "CSAE_TOPIC_DECISIONS": settings.topic_decisions,
        "CSAE_TOPIC_DLQ": settings.topic_dlq,
        "CSAE_ROUTER_GROUP": settings.router_group,
        "CSAE_REFERRAL_GROUP": settings.referral_group,
        "CSAE_KAFKA_TOPIC_PARTITIONS": str(settings.kafka_topic_partitions),
        "CSAE_ROUTER_METRICS_PORT": str(settings.router_metrics_port),
        "CSAE_WORKER_METRICS_PORT": str(settings.worker_metrics_port),
        "CSAE_LOG_LEVEL": settings.log_level,
    }


async def start(settings: Settings, *command: str) -> asyncio.subprocess.Process:
    """A `csae` process; a router or worker on a /metrics port of its own (several may run)."""
    if command[0] == "router":
        settings = settings.model_copy(update={"router_metrics_port": free_port()})
    else:
        settings = settings.model_copy(update={"worker_metrics_port": free_port()})
    return await asyncio.create_subprocess_exec(str(CSAE), *command, env=environment(settings))


async def stop(process: asyncio.subprocess.Process) -> None:
    """SIGTERM, then wait for the clean shutdown (kill only if it hangs)."""
    if process.returncode is None:
        process.send_signal(signals.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout=30)
        except TimeoutError:
            process.kill()
            await process.wait()


# --- measuring committed offsets ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a consumer group got over a backlog, from `started`."""

    seconds: float
    first_commit: float | None
    committed: int
    total: int
    at_first_commit: int = 0
    """How many were committed by the first commit (a process's start is before it)."""

    @property
    def rate(self) -> float:
        return self.committed / self.seconds

    @property
    def running_rate(self) -> float | None:
        """The rate once the process runs: from its first commit to its last."""
        if self.first_commit is None or self.seconds <= self.first_commit:
            return None
        return (self.committed - self.at_first_commit) / (self.seconds - self.first_commit)

    @property
    def finished(self) -> bool:
        return self.committed >= self.total


async def end_offsets(probe: AIOKafkaConsumer, topics: Sequence[str]) -> dict[TopicPartition, int]:
    partitions = [TopicPartition(topic, p) for topic in topics for p in range(PARTITIONS)]
    ends: dict[TopicPartition, int] = await probe.end_offsets(partitions)
    return ends


async def wait_for_group(
    admin: AIOKafkaAdminClient,
    group: str,
    ends: dict[TopicPartition, int],
    *,
    started: float,
    limit: float,
    processes: Sequence[asyncio.subprocess.Process] = (),
) -> Progress:
    """Poll the group's committed offsets until they reach `ends` (or `limit` seconds pass)."""
    total = sum(ends.values())
    first_commit: float | None = None
    at_first = 0
    while True:
        offsets = await admin.list_consumer_group_offsets(group)
        now = time.perf_counter()
        committed = sum(
            min(max(offsets[tp].offset, 0), end) for tp, end in ends.items() if tp in offsets
        )
        if first_commit is None and committed > 0:
            first_commit, at_first = now - started, committed
        if committed >= total or now - started > limit:
            return Progress(now - started, first_commit, committed, total, at_first)
        for process in processes:
            if process.returncode is not None:
                raise RuntimeError(f"{CSAE.name} exited with status {process.returncode}")
        await asyncio.sleep(POLL_SECONDS)


async def passthrough_process(
    settings: Settings, group: str, source: str, target: str
) -> asyncio.subprocess.Process:
    """The same passthrough in a Python process of its own, started as `csae router` is: its
    figure, like the router's, includes the interpreter's start, imports and group join."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.passthrough",
        group,
        source,
        target,
        env=environment(settings),
    )


# --- the stages --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Latency:
    samples: list[float]
    sent: int

    def percentile(self, p: int) -> float | None:
        if len(self.samples) < 2:
            return None
        return statistics.quantiles(self.samples, n=100, method="inclusive")[p - 1]


async def publish_to_stored(
    settings: Settings, bench: BenchSettings, run: str, dsn: str
) -> Latency:
    """Publish one flag at a time at `bench.rate`, and poll the tasks table for each."""
    count = max(int(bench.rate * bench.seconds), 1)
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}
    published = asyncio.Event()

    async def poll() -> None:
        connection = await asyncpg.connect(dsn)
        try:
            while not (published.is_set() and len(seen) == len(sent)):
                pending = [flag_id for flag_id in sent if flag_id not in seen]
                if pending:
                    rows = await connection.fetch(
                        "SELECT flag_id FROM tasks WHERE flag_id = ANY($1)", pending
                    )
                    now = time.perf_counter()
                    for row in rows:
                        seen.setdefault(str(row["flag_id"]), now)
                await asyncio.sleep(POLL_SECONDS)
        finally:
            await connection.close()

    poller = asyncio.create_task(poll())
    producer = new_producer(settings)
    await producer.start()
    try:
        acks = []
        started = time.perf_counter()
        for i in range(count):
            delay = started + i / bench.rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            # Subjects of their own (numbered after the backlog's), detected now.
            key, value = flag_bytes(run, bench.flags + i // FLAGS_PER_SUBJECT, datetime.now(UTC))
            sent[key.decode()] = time.perf_counter()
            acks.append(await producer.send(settings.topic_flags, value, key=key))
        await asyncio.gather(*acks)
        published.set()
        try:
            await asyncio.wait_for(asyncio.shield(poller), timeout=bench.timeout)
        except TimeoutError:
            poller.cancel()
    finally:
        await producer.stop()
    return Latency([seen[f] - sent[f] for f in seen], len(sent))


@dataclass(frozen=True, slots=True)
class StoreCost:
    large: float
    fresh: float
    fill_seconds: float
    samples: int


async def store_cost(database_url: str, bench: BenchSettings, run: str) -> StoreCost:
    """Median seconds to apply one new flag to a case of `bench.case_flags` flags vs a new case."""
    policy, directory = default_policy(), uk_forces()

    def task(account_id: str) -> ReferralTask:
        now = datetime.now(UTC).isoformat()
        flag = make_flag(
            detected_at=now,
            published_at=now,
            signals=[signal("coercion", 0.9), signal("grooming", 0.95)],
            child={"age_band": "13_15", "location": {"country": "GB", "postcode_district": "ME14"}},
            subject={"account_id": account_id, "ips": ["192.0.2.1"]},
        )
        routing = route(
            flag, policy=policy, directory=directory, home_force_id="kent", now=datetime.now(UTC)
        )
        return routing.tasks[0]

    engine = new_engine(database_url)
    sessions = new_sessionmaker(engine)

    async def apply(tasks: list[ReferralTask]) -> float:
        started = time.perf_counter()
        async with sessions() as session, session.begin():
            await store.apply_tasks(session=session, tasks=tasks, now=datetime.now(UTC))
        return time.perf_counter() - started

    try:
        large_case = f"bench-{run}-large-case"
        fill = 0.0
        for _ in range(bench.case_flags // FILL_BATCH):
            fill += await apply([task(large_case) for _ in range(FILL_BATCH)])
        large: list[float] = []
        fresh: list[float] = []
        started = time.perf_counter()
        for i in range(bench.samples):  # alternated, so drift affects both alike
            if i >= 3 and time.perf_counter() - started > bench.timeout:
                break
            large.append(await apply([task(large_case)]))
            fresh.append(await apply([task(f"bench-{run}-new-case-{i}")]))
        return StoreCost(statistics.median(large), statistics.median(fresh), fill, len(large))
    finally:
        await engine.dispose()


# --- the run -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stages:
    """The router's and the worker's throughput with `processes` of each."""

    processes: int
    router: Progress
    worker: Progress
    decisions: int


@dataclass(frozen=True, slots=True)
class Results:
    flags: int
    flag_bytes: int
    raw: Progress
    raw_process: Progress
    stages: list[Stages]
    latency: Latency
    durability: str


async def publish(settings: Settings, flags: Sequence[tuple[bytes, bytes]]) -> None:
    producer = new_producer(settings)
    await producer.start()
    try:
        acks = [await producer.send(settings.topic_flags, v, key=k) for k, v in flags]
        await asyncio.gather(*acks)
    finally:
        await producer.stop()


async def stages(
    settings: Settings,
    bench: BenchSettings,
    count: int,
    admin: AIOKafkaAdminClient,
    probe: AIOKafkaConsumer,
    processes: list[asyncio.subprocess.Process],
) -> Stages:
    """`count` routers over the flag backlog, from their start until their group committed its
    end; then `count` workers over what they wrote. The processes are left running."""
    flag_ends = await end_offsets(probe, [settings.topic_flags])
    started = time.perf_counter()
    routers = [await start(settings, "router") for _ in range(count)]
    processes.extend(routers)
    router = await wait_for_group(
        admin,
        settings.router_group,
        flag_ends,
        started=started,
        limit=bench.timeout,
        processes=routers,
    )
    print(f"pipeline: router x{count} {router.rate:.0f} flags/s", file=sys.stderr)

    outputs = await end_offsets(probe, [settings.topic_referrals, settings.topic_decisions])
    tasks = sum(n for tp, n in outputs.items() if tp.topic == settings.topic_referrals)
    started = time.perf_counter()
    workers = [await start(settings, "referral", "worker") for _ in range(count)]
    processes.extend(workers)
    worker = await wait_for_group(
        admin,
        settings.referral_group,
        outputs,
        started=started,
        limit=bench.timeout,
        processes=workers,
    )
    # Tasks per second: the worker's time over both topics, for the tasks alone.
    worker = Progress(
        worker.seconds,
        worker.first_commit,
        worker.committed * tasks // worker.total,
        tasks,
        worker.at_first_commit * tasks // worker.total,
    )
    print(f"pipeline: worker x{count} {worker.rate:.0f} tasks/s", file=sys.stderr)
    return Stages(count, router, worker, sum(outputs.values()) - tasks)


async def measure(
    settings: Settings, scaled: Settings, bench: BenchSettings, run: str, raw_topic: str
) -> Results:
    """The raw baseline, one process of each stage, the latency with those running; then
    SCALED processes of each on `scaled` (topics, groups and a database of their own)."""
    flags = backlog(run, bench.flags)
    await publish(settings, flags)
    await publish(scaled, flags)
    print(f"pipeline: published {len(flags)} flags, twice", file=sys.stderr)

    admin = AIOKafkaAdminClient(**client_options(settings))
    probe = AIOKafkaConsumer(**client_options(settings))
    await admin.start()
    await probe.start()
    processes: list[asyncio.subprocess.Process] = []
    try:
        flag_ends = await end_offsets(probe, [settings.topic_flags])
        raw_group = f"{settings.router_group}-raw"
        started = time.perf_counter()
        copying = asyncio.create_task(
            passthrough(settings, raw_group, settings.topic_flags, raw_topic)
        )
        raw = await wait_for_group(
            admin, raw_group, flag_ends, started=started, limit=bench.timeout
        )
        copying.cancel()
        await asyncio.gather(copying, return_exceptions=True)
        print(f"pipeline: raw passthrough {raw.rate:.0f} flags/s", file=sys.stderr)
        started = time.perf_counter()
        copier = await passthrough_process(
            settings, f"{raw_group}-process", settings.topic_flags, raw_topic
        )
        try:
            raw_process = await wait_for_group(
                admin,
                f"{raw_group}-process",
                flag_ends,
                started=started,
                limit=bench.timeout,
                processes=[copier],
            )
        finally:
            await stop(copier)
        print(f"pipeline: raw passthrough process {raw_process.rate:.0f} flags/s", file=sys.stderr)

        one = await stages(settings, bench, 1, admin, probe, processes)
        latency = await publish_to_stored(settings, bench, run, plain_dsn(settings.database_url))
        for process in reversed(processes):  # the machine to the scaled run alone
            await stop(process)
        processes.clear()
        several = await stages(scaled, bench, SCALED, admin, probe, processes)
    finally:
        await asyncio.gather(*(stop(process) for process in processes))
        await probe.stop()
        await admin.close()
    return Results(
        len(flags),
        round(statistics.mean(len(v) for _, v in flags)),
        raw,
        raw_process,
        [one, several],
        latency,
        await durability(plain_dsn(settings.database_url)),
    )


def report(r: Results, bench: BenchSettings) -> None:
    """Throughput (also as a ratio to the raw passthrough) and latency, as a table."""
    print(
        f"\npipeline, real broker and database: {r.flags} flags of ~{r.flag_bytes} bytes "
        f"({FLAGS_PER_SUBJECT} per subject), {PARTITIONS} partitions; one process of each "
        f"stage, then {SCALED} of each in their groups (own topics and database)"
    )
    print(
        f"  {'stage':<26}{'throughput':>17}{'vs raw':>8}{'time':>10}{'1st commit':>12}"
        f"{'after 1st commit':>20}"
    )
    rows = [
        ("raw aiokafka passthrough", "flags/s", r.raw),
        ("raw, as its own process", "flags/s", r.raw_process),
    ]
    for stage in r.stages:
        times = "" if stage.processes == 1 else f" x{stage.processes}"
        rows.append((f"csae router{times}", "flags/s", stage.router))
        rows.append((f"csae referral worker{times}", "tasks/s", stage.worker))
    for name, unit, p in rows:
        first = "-" if p.first_commit is None else f"{p.first_commit:.2f} s"
        line = f"  {name:<26}{p.rate:>9.0f} {unit}{p.rate / r.raw.rate:>7.2f}x"
        line += f"{p.seconds:>8.2f} s{first:>12}"
        running = p.running_rate
        line += f"{'-' if running is None else f'{running:.0f} {unit}':>20}"
        if not p.finished:
            line += f"  UNFINISHED: {p.committed} of {p.total} in {bench.timeout:.0f} s"
        print(line)
    one = r.stages[0].router
    print(
        f"  router x1 / raw: {one.rate / r.raw.rate:.2f}x against the passthrough in this process "
        f"(warm: no start, no join); {one.rate / r.raw_process.rate:.2f}x against it as its own "
        f"process, each from its start"
    )
    mine, warm, cold = (p.running_rate for p in (one, r.raw, r.raw_process))
    if mine is not None and warm is not None and cold is not None:
        print(
            f"  after each one's first commit: {mine / warm:.2f}x (in this process), "
            f"{mine / cold:.2f}x (its own process)"
        )
    for stage in r.stages:
        print(
            f"  (the worker x{stage.processes} stored {stage.worker.total} referral tasks and "
            f"{stage.decisions} decisions)"
        )
    print(f"  (PostgreSQL server: {r.durability}; CPU cores: {os.cpu_count()})")

    lat = r.latency
    p50, p99 = lat.percentile(50), lat.percentile(99)
    print(
        f"publish→stored at {bench.rate:.0f} flags/s for {bench.seconds:.0f} s, router and "
        f"worker running: {len(lat.samples)} of {lat.sent} flags stored"
    )
    if p50 is not None and p99 is not None:
        print(f"  {'latency p50':<26}{p50 * 1000:>12.1f} ms")
        print(f"  {'latency p99':<26}{p99 * 1000:>12.1f} ms")


def report_store(c: StoreCost, bench: BenchSettings) -> None:
    print(
        f"store, in-process: one new flag, median of {c.samples} (the large case was filled "
        f"at {bench.case_flags / c.fill_seconds:.0f} flags/s in batches of {FILL_BATCH})"
    )
    print(f"  {f'on a case of {bench.case_flags} flags':<26}{c.large * 1000:>12.2f} ms")
    print(f"  {'on a new case':<26}{c.fresh * 1000:>12.2f} ms")
    print(f"  {'ratio large / new':<26}{c.large / c.fresh:>12.2f}x")


async def main() -> None:
    """Run the pipeline benchmark on the broker and database of `Settings()`, then clean up."""
    bench = BenchSettings()
    run = uuid4().hex[:10]
    database_url = await create_database()  # on the server of CSAE_DATABASE_URL, migrated
    scaled_url = await create_database()
    try:
        settings = run_settings(run, database_url)
        scaled = run_settings(f"{run}-x{SCALED}", scaled_url)
        raw_topic = f"bench.{run}.raw"
        topics = [*all_topics(settings), *all_topics(scaled), raw_topic]
        # The raw passthrough's output topic, made like the others (those exist by then).
        await ensure_topics(settings)
        await ensure_topics(scaled)
        await ensure_topics(settings.model_copy(update={"topic_flags": raw_topic}))
        try:
            results = await measure(settings, scaled, bench, run, raw_topic)
        finally:
            admin = AIOKafkaAdminClient(**client_options(settings))
            await admin.start()
            try:
                await admin.delete_topics(topics)
            finally:
                await admin.close()
        report(results, bench)
        print("pipeline: store cost, in-process", file=sys.stderr)
        report_store(await store_cost(database_url, bench, run), bench)
    finally:
        await drop_database(database_url)
        await drop_database(scaled_url)
