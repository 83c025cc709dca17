"""Test settings isolated from every other run on the same broker and database."""

import asyncio
from uuid import uuid4

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy.engine import make_url

from services.pipeline.kafka import all_topics, client_options
from services.pipeline.settings import Settings
from services.referral.database import upgrade


def isolated_settings(database_url: str, **overrides: object) -> Settings:
    """Settings with topics and groups of their own, on the real broker and database."""
    run = uuid4().hex[:10]
    values: dict[str, object] = {
        "database_url": database_url,
        "topic_flags": f"test.{run}.flags",
        "topic_referrals": f"test.{run}.referrals",
        "topic_decisions": f"test.{run}.decisions",
        "topic_dlq": f"test.{run}.dlq",
        "router_group": f"test-{run}-router",
        "referral_group": f"test-{run}-referral",
        "batch_retry_seconds": 5.0,
        **overrides,
    }
    return Settings.model_validate(values)


async def delete_topics(settings: Settings) -> None:
    """Remove a test's topics, so runs do not pile them up in the local broker."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        await admin.delete_topics(all_topics(settings))
    finally:
        await admin.close()


def _plain_dsn(url: str, database: str) -> str:
    return (
        make_url(url)
        .set(drivername="postgresql", database=database)
        .render_as_string(hide_password=False)
    )


async def create_database(revision: str = "head") -> str:
    """A fresh database on the server at CSAE_DATABASE_URL, migrated to `revision`."""
    base = Settings().database_url
    name = f"csae_test_{uuid4().hex[:12]}"
    admin = await asyncpg.connect(_plain_dsn(base, "postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    await asyncio.to_thread(upgrade, url, revision)
    return url


async def drop_database(url: str) -> None:
    name = make_url(url).database or ""
    admin = await asyncpg.connect(_plain_dsn(Settings().database_url, "postgres"))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
