"""Liveness and readiness of a consumer on the real broker and database: ready once in its group
with the broker answering; not live while its consume loop hangs, live again when it comes
round; the worker ready only while its database answers."""

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import httpx
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.pipeline.health import ConsumerHealth, serve
from services.pipeline.kafka import (
    Record,
    consumer_health,
    new_producer,
    produce_all,
    run_consumer_service,
)
from services.pipeline.metrics import Metrics
from services.pipeline.settings import Settings
from services.referral import database
from services.referral.database import new_engine, new_sessionmaker
from services.referral.worker import watch_database


class HangingHandler:
    """Stores nothing; the first batch hangs until `release` is set (a call that never returns)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.seen = 0

    async def __call__(self, records: Sequence[Record]) -> None:
        self.seen += len(records)
        await self.release.wait()

    def is_transient(self, error: BaseException) -> bool:
        return False

    async def park(self, record: Record, error: BaseException, tries: int) -> bool:
        raise AssertionError("nothing fails here")


@dataclass
class Served:
    url: str
    health: ConsumerHealth
    handler: HangingHandler


async def _status(client: httpx.AsyncClient, url: str) -> int:
    return (await client.get(url)).status_code


async def _until_status(url: str, wanted: int, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(timeout=5) as client:
        while (status := await _status(client, url)) != wanted:
            assert time.monotonic() < deadline, f"{url}: {status}, not {wanted}, after {within} s"
            await asyncio.sleep(0.1)


@pytest.fixture
async def consumer(settings: Settings) -> AsyncIterator[Served]:
    tuned = settings.model_copy(update={"lag_interval_seconds": 0.5, "consumer_stall_seconds": 2.0})
    metrics = Metrics(CollectorRegistry())
    health = consumer_health(tuned)
    server, thread = serve(metrics.registry, health, "127.0.0.1", 0)
    handler = HangingHandler()
    stop = asyncio.Event()
    running = asyncio.create_task(
        run_consumer_service(
            tuned,
            group=tuned.router_group,
            topics=[tuned.topic_flags],
            metrics=metrics,
            build_handler=lambda _producer: handler,
            stop=stop,
            health=health,
        )
    )
    try:
        yield Served(f"http://127.0.0.1:{server.server_port}", health, handler)
    finally:
        handler.release.set()
        stop.set()
        await asyncio.wait_for(running, timeout=30)
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


async def test_ready_in_its_group_then_not_live_while_its_loop_hangs(
    consumer: Served, settings: Settings
) -> None:
    await _until_status(f"{consumer.url}/readyz", 200)
    assert consumer.health.ready()[1]["consumer_group"] == "member"
    await _until_status(f"{consumer.url}/healthz", 200)

    producer = new_producer(settings)
    await producer.start()
    try:
        await produce_all(producer, [(settings.topic_flags, b"k", b"{}")])
    finally:
        await producer.stop()
    # The handler hangs on the record: the loop stops coming round, so liveness fails (and a
    # hung consumer is not ready either), though the broker still answers the lag reads.
    await _until_status(f"{consumer.url}/healthz", 503)
    assert consumer.handler.seen == 1
    async with httpx.AsyncClient(timeout=5) as client:
        ready = await client.get(f"{consumer.url}/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["broker"] == "ok"
    assert ready.json()["checks"]["consume_loop"].startswith("stalled")

    consumer.handler.release.set()
    await _until_status(f"{consumer.url}/healthz", 200)
    await _until_status(f"{consumer.url}/readyz", 200)


async def _database_heard(sessions: async_sessionmaker[AsyncSession], within: float) -> bool:
    health = ConsumerHealth(stall_seconds=60, stale_seconds=60, needs_database=True)
    stop = asyncio.Event()
    watching = asyncio.create_task(watch_database(sessions, health, 0.2, stop))
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            if health.ready()[1]["database"] == "ok":
                return True
            await asyncio.sleep(0.1)
        return False
    finally:
        stop.set()
        await watching


async def test_the_worker_hears_its_database_and_not_one_that_is_down(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    assert await _database_heard(sessions, within=10)
    # Nothing listens on port 1: every check fails, so the worker would never be ready.
    engine = new_engine("postgresql+asyncpg://postgres@127.0.0.1:1/csae")
    try:
        assert not await _database_heard(new_sessionmaker(engine), within=2)
    finally:
        await engine.dispose()


async def test_a_database_that_never_answers_fails_a_try_within_the_connect_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A blackholed database (it accepts the connection and never speaks) fails each try after
    the connect timeout, not asyncpg's 60 s: retry rounds come round inside the liveness
    threshold, so a database outage never restarts a worker."""
    monkeypatch.setattr(database, "CONNECT_TIMEOUT_SECONDS", 0.5)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the kernel completes the handshake; nothing ever answers
        port = silent.getsockname()[1]
        engine = database.new_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{port}/csae")
        started = time.monotonic()
        try:
            with pytest.raises(TimeoutError):
                async with engine.connect() as connection:
                    await connection.execute(text("SELECT 1"))
        finally:
            await engine.dispose()
    assert time.monotonic() - started < 5
