"""Scale-out as a platform runs it: three `csae router` and three `csae referral worker`
processes in their two consumer groups, on topics of 12 partitions on the real broker and a
database of their own. The load is shared (every process owns partitions and handles messages,
read from its /metrics) and every flag is handled once in effect: one decision per flag, one
stored task per (flag, destination), one case per case key, each flag counted once on its case."""

import asyncio
import json
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from services.pipeline.kafka import ensure_topics, new_producer, produce_all
from services.pipeline.settings import Settings
from tests.e2e.test_pipeline import CSAE, _environment, free_port
from tests.factories import police_referral
from tests.infra import _plain_dsn, delete_topics, isolated_settings
from tests.kafka_reading import committed_and_end

PROCESSES = 3
PARTITIONS = 12
SUBJECTS = 120
FLAGS_PER_SUBJECT = 2
# Postcode districts of different forces: the child's location picks the one police destination.
DISTRICTS = ("CV1", "ME14", "M1", "LS1", "CF10", "BS1", "NE1", "SW1A")


@dataclass
class Member:
    name: str
    group: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path


@dataclass
class Cluster:
    settings: Settings
    routers: list[Member]
    workers: list[Member]

    @property
    def members(self) -> list[Member]:
        return [*self.routers, *self.workers]


def _start(settings: Settings, name: str, command: list[str], port: int, logs: Path) -> Member:
    """One process with its own /metrics port; the rest of its environment is `settings`."""
    is_router = command == ["router"]
    env = _environment(settings)
    env["CSAE_ROUTER_METRICS_PORT" if is_router else "CSAE_WORKER_METRICS_PORT"] = str(port)
    log = logs / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen([CSAE, *command], env=env, stdout=out, stderr=subprocess.STDOUT)
    group = settings.router_group if is_router else settings.referral_group
    return Member(name, group, port, process, log)


@pytest.fixture
async def cluster(own_database_url: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    settings = isolated_settings(
        own_database_url, kafka_topic_partitions=PARTITIONS, lag_interval_seconds=1.0
    )
    await ensure_topics(settings)
    routers = [
        _start(settings, f"router-{i}", ["router"], free_port(), tmp_path) for i in range(PROCESSES)
    ]
    workers = [
        _start(settings, f"worker-{i}", ["referral", "worker"], free_port(), tmp_path)
        for i in range(PROCESSES)
    ]
    running = Cluster(settings, routers, workers)
    try:
        yield running
    finally:
        for member in running.members:
            if member.process.poll() is None:
                member.process.terminate()
        for member in running.members:
            try:
                member.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                member.process.kill()
                member.process.wait()
        await delete_topics(settings)


async def _samples(client: httpx.AsyncClient, member: Member) -> dict[str, float]:
    """A process's metrics: each sample's name and labels as Prometheus prints them, its value."""
    text = (await client.get(f"http://127.0.0.1:{member.port}/metrics")).text
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}"] = sample.value
    return found


def _total(samples: dict[str, float], name: str) -> float:
    return sum(value for key, value in samples.items() if key.startswith(name + "{"))


async def _owned(client: httpx.AsyncClient, member: Member) -> float:
    """Partitions the member owns now (0 while it is not up or not yet in its group)."""
    if member.process.poll() is not None:
        raise AssertionError(f"{member.name} exited:\n{member.log.read_text()}")
    try:
        samples = await _samples(client, member)
    except httpx.TransportError:
        return 0
    return samples.get(f'csae_consumer_assigned_partitions{{group="{member.group}"}}', 0)


async def _ready(client: httpx.AsyncClient, member: Member) -> bool:
    try:
        return (await client.get(f"http://127.0.0.1:{member.port}/readyz")).status_code == 200
    except httpx.TransportError:  # not serving yet
        return False


async def _until_shared(cluster: Cluster, within: float = 60.0) -> None:
    """Until each group's members together own all its partitions, each of them some."""
    wanted = {cluster.routers[0].group: PARTITIONS, cluster.workers[0].group: 2 * PARTITIONS}
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(timeout=5) as client:
        while True:
            owned = {m.name: await _owned(client, m) for m in cluster.members}
            shared = all(
                sum(owned[m.name] for m in cluster.members if m.group == group) == total
                and all(owned[m.name] > 0 for m in cluster.members if m.group == group)
                for group, total in wanted.items()
            )
            # ...and each says so on /readyz: in its group, its broker (and database) answering.
            ready = {m.name: await _ready(client, m) for m in cluster.members}
            if shared and all(ready.values()):
                return
            assert time.monotonic() < deadline, f"not shared after {within} s: {owned} {ready}"
            await asyncio.sleep(0.2)


def _flags(settings: Settings, run: str) -> list[tuple[str, bytes | None, bytes]]:
    """FLAGS_PER_SUBJECT referable flags about each of SUBJECTS reported accounts, interleaved:
    each flag makes one police task, and each subject's flags one case."""
    now = datetime.now(UTC)
    messages: list[tuple[str, bytes | None, bytes]] = []
    for i in range(SUBJECTS * FLAGS_PER_SUBJECT):
        subject = i % SUBJECTS
        account = f"scale-{run}-{subject:04d}"
        document = police_referral(account, DISTRICTS[subject % len(DISTRICTS)], now)
        key = document["flag_id"].encode()
        messages.append((settings.topic_flags, key, json.dumps(document).encode()))
    return messages


async def _until(condition: str, dsn: str, expected: int, within: float = 40.0) -> None:
    """Poll a count in the database until it reaches `expected`."""
    deadline = time.monotonic() + within
    connection = await asyncpg.connect(dsn)
    try:
        while (found := await connection.fetchval(condition)) < expected:
            assert time.monotonic() < deadline, f"{condition}: {found} of {expected}"
            await asyncio.sleep(0.2)
    finally:
        await connection.close()


async def _until_committed(
    settings: Settings, topic: str, group: str, within: float = 30.0
) -> None:
    deadline = time.monotonic() + within
    while True:
        committed, end = await committed_and_end(settings, topic, group)
        if committed == end:
            return
        assert time.monotonic() < deadline, f"{group} on {topic}: {committed} of {end} committed"
        await asyncio.sleep(0.2)


async def test_three_routers_and_three_workers_share_12_partitions_and_handle_each_flag_once(
    cluster: Cluster,
) -> None:
    s = cluster.settings
    await _until_shared(cluster)
    flags = _flags(s, uuid4().hex[:8])
    producer = new_producer(s)
    await producer.start()
    try:
        await produce_all(producer, flags)
    finally:
        await producer.stop()
    count = len(flags)

    dsn = _plain_dsn(s.database_url, make_url(s.database_url).database or "")
    await _until("SELECT count(*) FROM decisions", dsn, count)
    await _until("SELECT count(*) FROM tasks", dsn, count)
    # Every offset committed: each process counted its batches before committing them.
    await _until_committed(s, s.topic_flags, s.router_group)
    await _until_committed(s, s.topic_referrals, s.referral_group)
    await _until_committed(s, s.topic_decisions, s.referral_group)

    connection = await asyncpg.connect(dsn)
    try:
        decided = await connection.fetch("SELECT flag_id, outcome FROM decisions")
        tasks = await connection.fetch(
            "SELECT t.flag_id, c.destination_key FROM tasks t JOIN cases c USING (case_id)"
        )
        cases = await connection.fetch("SELECT case_key, status, flag_count FROM cases")
    finally:
        await connection.close()
    sent = {key.decode() for _, key, _ in flags if key}
    assert {str(r["flag_id"]) for r in decided} == sent
    assert {r["outcome"] for r in decided} == {"refer"}
    # One stored task per (flag, destination): each flag reached exactly one police force.
    pairs = [(str(r["flag_id"]), r["destination_key"]) for r in tasks]
    assert len(pairs) == len(set(pairs)) == count
    assert {flag for flag, _ in pairs} == sent
    assert all(destination.startswith("police:") for _, destination in pairs)
    # One case per subject (its case key), holding each of its flags once.
    assert len(cases) == len({r["case_key"] for r in cases}) == SUBJECTS
    assert {r["status"] for r in cases} == {"ready"}
    assert sorted(r["flag_count"] for r in cases) == [FLAGS_PER_SUBJECT] * SUBJECTS

    async with httpx.AsyncClient(timeout=5) as client:
        routed = {m.name: await _samples(client, m) for m in cluster.routers}
        stored = {m.name: await _samples(client, m) for m in cluster.workers}
    # The load was shared: every process owned partitions and handled some of it. (A message
    # re-read after a rebalance is counted again by its second reader, so the sums are at least
    # the count; the database above shows it had one effect.)
    handled = {name: _total(samples, "csae_router_flags_total") for name, samples in routed.items()}
    handled |= {
        name: _total(samples, "csae_cases_written_total") for name, samples in stored.items()
    }
    assert all(n > 0 for n in handled.values()), handled
    assert sum(handled[m.name] for m in cluster.routers) >= count
    assert sum(handled[m.name] for m in cluster.workers) >= count
    for name, samples in (routed | stored).items():
        assert _total(samples, "csae_consumer_assigned_partitions") > 0, name
        assert _total(samples, "csae_dlq_messages_total") == 0, name

    for member in cluster.members:
        member.process.terminate()
    codes = {m.name: m.process.wait(timeout=30) for m in cluster.members}
    assert set(codes.values()) == {0}, codes
