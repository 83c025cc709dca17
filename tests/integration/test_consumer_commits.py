"""A consumer's commits on the real broker: each fetch's commit is sent while the next fetch is
processed, so the last fetch's must still be made when there is no next one."""

import asyncio
from collections.abc import Sequence

from prometheus_client import CollectorRegistry

from services.pipeline.kafka import Record, new_producer, produce_all, run_consumer_service
from services.pipeline.metrics import Metrics
from services.pipeline.settings import Settings
from tests.kafka_reading import committed_and_end


class StopAfter:
    """Stores nothing; asks the consumer to stop once it has handled `count` records."""

    def __init__(self, count: int, stop: asyncio.Event) -> None:
        self.count = count
        self.stop = stop
        self.seen = 0

    async def __call__(self, records: Sequence[Record]) -> None:
        self.seen += len(records)
        if self.seen >= self.count:
            self.stop.set()

    def is_transient(self, error: BaseException) -> bool:
        return False

    async def park(self, record: Record, error: BaseException, tries: int) -> bool:
        raise AssertionError("nothing fails here")


async def test_the_last_fetch_is_committed_before_the_consumer_leaves(settings: Settings) -> None:
    count = 300
    tuned = settings.model_copy(update={"batch_max_records": 50})  # several fetches, commits
    producer = new_producer(tuned)
    await producer.start()
    try:
        await produce_all(
            producer, [(tuned.topic_flags, f"k{i}".encode(), b"{}") for i in range(count)]
        )
    finally:
        await producer.stop()
    stop = asyncio.Event()
    handler = StopAfter(count, stop)
    await asyncio.wait_for(
        run_consumer_service(
            tuned,
            group=tuned.router_group,
            topics=[tuned.topic_flags],
            metrics=Metrics(CollectorRegistry()),
            build_handler=lambda _producer: handler,
            stop=stop,
        ),
        timeout=60,
    )
    # Read once, at once: the fetch that set `stop` has no next fetch to be committed beside;
    # its commit is made before run_consumer_service returns, or it would be read again.
    committed, end = await committed_and_end(tuned, tuned.topic_flags, tuned.router_group)
    assert handler.seen == count
    assert (committed, end) == (count, count)
