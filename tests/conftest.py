"""Fixtures over the real Kafka broker and PostgreSQL that `make test` starts (lazily: the unit
tests use none of them).

Each test run gets its own database and its own topics and consumer groups, so runs never see
each other's data (and a `make run` on the same machine is left alone).
"""

import asyncio
from collections.abc import AsyncIterator
from uuid import uuid4

import asyncpg
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.pipeline.kafka import ensure_topics
from services.pipeline.settings import Settings
from services.referral.database import new_engine, new_sessionmaker, upgrade
from tests.infra import delete_topics, isolated_settings


def _plain_dsn(url: str, database: str) -> str:
    return (
        make_url(url)
        .set(drivername="postgresql", database=database)
        .render_as_string(hide_password=False)
    )


async def _create_database() -> str:
    """A fresh, migrated database on the server at CSAE_DATABASE_URL."""
    base = Settings().database_url
    name = f"csae_test_{uuid4().hex[:12]}"
    admin = await asyncpg.connect(_plain_dsn(base, "postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    await asyncio.to_thread(upgrade, url)
    return url


async def _drop_database(url: str) -> None:
    name = make_url(url).database or ""
    admin = await asyncpg.connect(_plain_dsn(Settings().database_url, "postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    """A fresh, migrated database for the whole run; dropped afterwards."""
    url = await _create_database()
    yield url
    await _drop_database(url)


@pytest.fixture
async def own_database_url() -> AsyncIterator[str]:
    """A database of the test's own, for tests that look at every case (the SLA sweep)."""
    url = await _create_database()
    yield url
    await _drop_database(url)


@pytest.fixture
async def own_sessions(own_database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = new_engine(own_database_url)
    try:
        yield new_sessionmaker(engine)
    finally:
        await engine.dispose()


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = new_engine(database_url)
    try:
        yield new_sessionmaker(engine)
    finally:
        await engine.dispose()


@pytest.fixture
async def settings(database_url: str) -> AsyncIterator[Settings]:
    """Settings with topics of the test's own, deleted afterwards."""
    s = isolated_settings(database_url)
    await ensure_topics(s)
    yield s
    await delete_topics(s)
