"""Test settings isolated from every other run on the same broker and database."""

from uuid import uuid4

from aiokafka.admin import AIOKafkaAdminClient

from services.pipeline.kafka import all_topics, client_options
from services.pipeline.settings import Settings


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
