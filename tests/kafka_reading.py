"""Reading what the pipeline wrote to a topic, bounded in time (no sleeping on the clock)."""

import asyncio
import time

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from services.pipeline.kafka import Record, client_options
from services.pipeline.settings import Settings


async def read_topic(
    settings: Settings, topic: str, count: int, *, within: float = 30.0
) -> list[Record]:
    """Every record of `topic` from the start, once there are `count`; fails after `within` s."""
    consumer = AIOKafkaConsumer(topic, **client_options(settings), auto_offset_reset="earliest")
    await consumer.start()
    records: list[Record] = []
    deadline = time.monotonic() + within
    try:
        while len(records) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic}: {len(records)} of {count} records after {within} s")
            batches = await consumer.getmany(timeout_ms=250)
            for partition in batches.values():
                records.extend(partition)
    finally:
        await consumer.stop()
    return records


async def committed_and_end(settings: Settings, topic: str, group: str) -> tuple[int, int]:
    """(sum of the group's committed offsets, sum of end offsets) over the topic's partitions."""
    partitions = [TopicPartition(topic, p) for p in range(settings.kafka_topic_partitions)]
    admin = AIOKafkaAdminClient(**client_options(settings))
    consumer = AIOKafkaConsumer(**client_options(settings))
    await admin.start()
    await consumer.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group, partitions=partitions)
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
        await admin.close()
    committed = sum(meta.offset for meta in offsets.values() if meta.offset >= 0)
    return committed, sum(ends.values())


async def wait_for_commit(
    settings: Settings, topic: str, group: str, expected: int, *, within: float = 30.0
) -> int:
    """Poll the group's committed offsets on `topic` until they reach `expected` or time is up."""
    deadline = time.monotonic() + within
    while True:
        committed, _ = await committed_and_end(settings, topic, group)
        if committed >= expected or time.monotonic() > deadline:
            return committed
        await asyncio.sleep(0.1)
