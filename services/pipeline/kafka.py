"""The Kafka edge both services share: clients, topics, and the consume-batch-commit loop.

At-least-once with idempotent outputs: a batch's offsets are committed only after its outputs are
durable (produce acknowledged with acks=all, or the database transaction committed). A batch that
keeps failing is handed back to Kafka (seek to its first offsets) and fetched again, so the
consumer stays in its group and nothing is skipped.
"""

import asyncio
import contextlib
import logging
import signal
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeAlias

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import CommitFailedError, TopicAlreadyExistsError

from services.pipeline.metrics import Metrics
from services.pipeline.settings import Settings

log = logging.getLogger(__name__)

Record: TypeAlias = ConsumerRecord
BatchHandler = Callable[[Sequence[Record]], Awaitable[None]]


def client_options(settings: Settings) -> dict[str, Any]:
    """Connection options common to producers, consumers and the admin client."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(
            cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
        )
        if settings.kafka_ssl_certfile:
            context.load_cert_chain(
                str(settings.kafka_ssl_certfile),
                str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
            )
        options["ssl_context"] = context
    if settings.kafka_sasl_mechanism:
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        if settings.kafka_sasl_password is not None:
            options["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return options


def all_topics(settings: Settings) -> list[str]:
    return [
        settings.topic_flags,
        settings.topic_referrals,
        settings.topic_decisions,
        settings.topic_dlq,
    ]


async def ensure_topics(settings: Settings) -> None:
    """Create the pipeline's topics when missing (the broker does not auto-create them)."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [topic for topic in all_topics(settings) if topic not in existing]
        if not missing:
            return
        new = [
            NewTopic(topic, settings.kafka_topic_partitions, settings.kafka_replication_factor)
            for topic in missing
        ]
        with contextlib.suppress(TopicAlreadyExistsError):  # another process was first
            await admin.create_topics(new)
        log.info("topics created", extra={"topics": ",".join(missing)})
    finally:
        await admin.close()


def new_producer(settings: Settings) -> AIOKafkaProducer:
    """A producer whose acknowledged sends are durable: acks=all, idempotent, ordered."""
    return AIOKafkaProducer(
        **client_options(settings),
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        request_timeout_ms=30_000,
    )


def new_consumer(settings: Settings, group: str, topics: Sequence[str]) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        *topics,
        **client_options(settings),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_poll_interval_ms=300_000,
    )


async def produce_all(
    producer: AIOKafkaProducer, messages: Sequence[tuple[str, bytes | None, bytes]]
) -> None:
    """Send (topic, key, value) messages and return once the broker acknowledged every one."""
    pending = [await producer.send(topic, value, key=key) for topic, key, value in messages]
    await asyncio.gather(*pending)


def stop_on_signals(stop: asyncio.Event) -> None:
    """Set `stop` on SIGTERM or SIGINT, so the loop finishes its batch and exits cleanly."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


async def _handle_with_retry(
    handle: BatchHandler,
    records: Sequence[Record],
    *,
    group: str,
    retry_seconds: float,
    stop: asyncio.Event,
    metrics: Metrics,
) -> bool:
    """Run `handle` until it succeeds, `retry_seconds` pass, or a stop is asked; True on success."""
    deadline = time.monotonic() + retry_seconds
    delay = 0.2
    while True:
        try:
            await handle(records)
            return True
        except Exception as exc:  # a database error, say: retried, never dropped
            metrics.batch_failures.labels(group).inc()
            log.warning(
                "batch failed; retrying",
                extra={"group": group, "error": type(exc).__name__, "records": len(records)},
            )
        if stop.is_set() or time.monotonic() + delay > deadline:
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)
        delay = min(delay * 2, 10.0)


async def consume_in_batches(
    consumer: AIOKafkaConsumer,
    handle: BatchHandler,
    *,
    group: str,
    settings: Settings,
    metrics: Metrics,
    stop: asyncio.Event,
) -> None:
    """Fetch batches, hand each to `handle`, and commit its offsets once `handle` returned."""
    while not stop.is_set():
        batches: dict[TopicPartition, list[Record]] = await consumer.getmany(
            timeout_ms=500, max_records=settings.batch_max_records
        )
        if not batches:
            continue
        records = [record for partition in batches.values() for record in partition]
        done = await _handle_with_retry(
            handle,
            records,
            group=group,
            retry_seconds=settings.batch_retry_seconds,
            stop=stop,
            metrics=metrics,
        )
        if not done:
            # Hand the batch back: fetch it again. A partition lost in a rebalance meanwhile is
            # re-read from its committed offset by its new owner.
            assigned = consumer.assignment()
            for tp, partition in batches.items():
                if tp in assigned:
                    consumer.seek(tp, partition[0].offset)
            continue
        offsets = {tp: partition[-1].offset + 1 for tp, partition in batches.items()}
        try:
            await consumer.commit(offsets)
        except CommitFailedError:
            # The group rebalanced; the new owner re-reads the batch and idempotence absorbs it.
            log.warning("offset commit failed after rebalance", extra={"group": group})
        _record_lag(consumer, offsets, group, metrics)


def _record_lag(
    consumer: AIOKafkaConsumer,
    offsets: dict[TopicPartition, int],
    group: str,
    metrics: Metrics,
) -> None:
    lag: dict[str, int] = {}
    for tp, next_offset in offsets.items():
        highwater = consumer.highwater(tp)
        if highwater is not None:
            lag[tp.topic] = lag.get(tp.topic, 0) + max(highwater - next_offset, 0)
    for topic, behind in lag.items():
        metrics.consumer_lag.labels(group, topic).set(behind)


async def run_consumer_service(
    settings: Settings,
    *,
    group: str,
    topics: Sequence[str],
    metrics: Metrics,
    build_handler: Callable[[AIOKafkaProducer], BatchHandler],
    stop: asyncio.Event,
) -> None:
    """Run one consumer group member until `stop` is set, then flush, commit and leave the group."""
    await ensure_topics(settings)
    producer = new_producer(settings)
    consumer = new_consumer(settings, group, topics)
    await producer.start()
    try:
        await consumer.start()
        try:
            log.info("consuming", extra={"group": group, "topics": ",".join(topics)})
            await consume_in_batches(
                consumer,
                build_handler(producer),
                group=group,
                settings=settings,
                metrics=metrics,
                stop=stop,
            )
        finally:
            await consumer.stop()
    finally:
        await producer.stop()
    log.info("stopped", extra={"group": group})
