"""Fixtures over the real Kafka broker and PostgreSQL that `make test` starts (lazily: the unit
tests use none of them).

Each test run gets its own database and its own topics and consumer groups, so runs never see
each other's data (and a `make run` on the same machine is left alone).
"""

import asyncio
import os
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.domain.forces import uk_forces
from services.domain.policy import default_policy
from services.pipeline.kafka import BatchHandler, ensure_topics, run_consumer_service
from services.pipeline.metrics import Metrics
from services.pipeline.settings import Settings
from services.referral.database import new_engine, new_sessionmaker
from services.router.service import FlagRouter
from tests.infra import create_database, delete_topics, drop_database, isolated_settings

# The suite sends thousands of flags from one synthetic source within minutes: the flood breaker
# (which would rightly open) is turned off for it, processes it starts included; the breaker's
# own tests turn it on with their own sources and thresholds.
os.environ.setdefault("CSAE_BREAKER_ENABLED", "false")


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    """A fresh, migrated database for the whole run; dropped afterwards."""
    url = await create_database()
    yield url
    await drop_database(url)


@pytest.fixture
async def own_database_url() -> AsyncIterator[str]:
    """A database of the test's own, for tests that look at every case (the SLA sweep)."""
    url = await create_database()
    yield url
    await drop_database(url)


async def _sessions(url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = new_engine(url)
    try:
        yield new_sessionmaker(engine)
    finally:
        await engine.dispose()


@pytest.fixture
async def own_sessions(own_database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async for made in _sessions(own_database_url):
        yield made


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async for made in _sessions(database_url):
        yield made


@pytest.fixture
async def settings(database_url: str) -> AsyncIterator[Settings]:
    """Settings with topics of the test's own, deleted afterwards."""
    s = isolated_settings(database_url)
    await ensure_topics(s)
    yield s
    await delete_topics(s)


@pytest.fixture
async def router(settings: Settings) -> AsyncIterator[Metrics]:
    """A router consuming the test's flags topic until the test ends."""
    metrics = Metrics(CollectorRegistry())
    stop = asyncio.Event()

    def build(producer: AIOKafkaProducer) -> BatchHandler:
        return FlagRouter(
            producer,
            settings=settings,
            metrics=metrics,
            policy=default_policy(),
            directory=uk_forces(),
        )

    running = asyncio.create_task(
        run_consumer_service(
            settings,
            group=settings.router_group,
            topics=[settings.topic_flags],
            metrics=metrics,
            build_handler=build,
            stop=stop,
        )
    )
    yield metrics
    stop.set()
    await asyncio.wait_for(running, timeout=30)
