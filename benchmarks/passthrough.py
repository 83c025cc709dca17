"""The baseline of the pipeline benchmark: a raw aiokafka consume→produce passthrough, run in
the benchmark's process or as a process of its own (`python -m benchmarks.passthrough GROUP
SOURCE TARGET`, with the run's `CSAE_*` settings, until SIGTERM or SIGINT). It imports no more
than it needs, so its start is not made slower than a plain client's."""

import asyncio
import contextlib
import sys

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from services.pipeline.kafka import client_options, stop_on_signals
from services.pipeline.settings import Settings


async def passthrough(settings: Settings, group: str, source: str, target: str) -> None:
    """Copy `source` to `target` forever: fetch a batch, produce it, commit once acknowledged.
    Plain aiokafka with the pipeline's client settings, nothing else."""
    consumer = AIOKafkaConsumer(
        source,
        **client_options(settings),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    producer = AIOKafkaProducer(
        **client_options(settings), acks="all", enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    try:
        await consumer.start()
        try:
            while True:
                batches = await consumer.getmany(
                    timeout_ms=500, max_records=settings.batch_max_records
                )
                pending = [
                    await producer.send(target, record.value, key=record.key)
                    for records in batches.values()
                    for record in records
                ]
                await asyncio.gather(*pending)
                if batches:
                    await consumer.commit(
                        {tp: records[-1].offset + 1 for tp, records in batches.items()}
                    )
        finally:
            await consumer.stop()
    finally:
        await producer.stop()


async def main(group: str, source: str, target: str) -> None:
    stop = asyncio.Event()
    stop_on_signals(stop)
    copying = asyncio.create_task(passthrough(Settings(), group, source, target))
    await stop.wait()
    copying.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await copying


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
