"""The Kafka edge both services share: clients, topics, and the consume-batch-commit loop.

At-least-once with idempotent outputs: a batch's offsets are committed only after its outputs are
durable (produce acknowledged with acks=all, or the database transaction committed). Each
partition's records are processed on their own: a message whose data cannot be stored is
isolated (the batch is halved until it is found), tried a few times, then parked, and the rest
are committed; a transient fault (database or broker down) blocks and retries, and a batch that
keeps failing is handed back to Kafka (seek to its first offsets) and fetched again, so the
consumer stays in its group and nothing is skipped. Rebalances are ordinary: only partitions
still owned are committed.
"""

import asyncio
import contextlib
import logging
import random
import signal
import ssl
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeAlias

import murmurhash2
from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    CommitFailedError,
    GroupAuthorizationFailedError,
    IllegalStateError,
    KafkaError,
    KafkaTimeoutError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)
from aiokafka.producer.message_accumulator import BatchBuilder

from services.pipeline.health import ConsumerHealth
from services.pipeline.metrics import Metrics, watch_event_loop
from services.pipeline.settings import Settings

log = logging.getLogger(__name__)

Record: TypeAlias = ConsumerRecord


class BatchHandler(Protocol):
    """What a consumer does with records: store them (all or nothing), say which errors pass
    by themselves, and park a message that cannot be stored."""

    async def __call__(self, records: Sequence[Record]) -> None: ...

    def is_transient(self, error: BaseException) -> bool:
        """True for a fault that passes (database or broker down): the batch is retried and
        never dead-lettered. Else the error is the data's: the message is isolated."""
        ...

    async def park(self, record: Record, error: BaseException, tries: int) -> bool:
        """Record a message that failed `tries` times (dead letter, parked table); return once
        that record is durable: True when it was not parked before."""
        ...


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
    """Create the pipeline's topics when missing (the broker does not auto-create them), and
    grow to `kafka_topic_partitions` a topic that has fewer (partitions are never removed)."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        wanted = settings.kafka_topic_partitions
        topics = all_topics(settings)
        existing = set(await admin.list_topics())
        missing = [topic for topic in topics if topic not in existing]
        if missing:
            new = [NewTopic(topic, wanted, settings.kafka_replication_factor) for topic in missing]
            with contextlib.suppress(TopicAlreadyExistsError):  # another process was first
                await admin.create_topics(new)
            log.info("topics created", extra={"topics": ",".join(missing), "partitions": wanted})
        # Every topic, not only those listed: a listing can lag behind a topic just created.
        grow = {
            topic: NewPartitions(total_count=wanted)
            for topic, count in (await _partition_counts(admin, topics)).items()
            if count < wanted
        }
        if grow:
            response = await admin.create_partitions(grow)
            refused = [t for t, code, _ in response.topic_errors if code not in (0, _ALREADY_GROWN)]
            if refused:
                raise KafkaError(f"partitions not grown for {', '.join(refused)}")
            log.info(
                "topic partitions grown", extra={"topics": ",".join(grow), "partitions": wanted}
            )
    finally:
        await admin.close()


async def _partition_counts(
    admin: AIOKafkaAdminClient, topics: Sequence[str], *, within: float = 15.0
) -> dict[str, int]:
    """Each topic's partition count, once the broker describes every one of them. A topic
    created a moment ago (here or by another process) can be described without partitions,
    or not at all, for a while: read as "nothing to grow", it would keep too few."""
    deadline = time.monotonic() + within
    while True:
        counts = {
            d["topic"]: len(d["partitions"])
            for d in await admin.describe_topics(list(topics))
            if d["error_code"] == 0 and d["partitions"]
        }
        if len(counts) == len(set(topics)) or time.monotonic() > deadline:
            return counts
        await asyncio.sleep(0.2)


_ALREADY_GROWN = 37
"""INVALID_PARTITIONS: the topic already has that many partitions (another process grew it)."""


def new_producer(settings: Settings) -> AIOKafkaProducer:
    """A producer whose acknowledged sends are durable: acks=all, idempotent, ordered."""
    return AIOKafkaProducer(
        **client_options(settings),
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        request_timeout_ms=30_000,
        compression_type=None
        if settings.kafka_compression == "none"
        else settings.kafka_compression,
        max_batch_size=settings.kafka_max_batch_bytes,
    )


def new_consumer(settings: Settings, group: str) -> AIOKafkaConsumer:
    """A group member that commits by hand, after its outputs are durable."""
    return AIOKafkaConsumer(
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
    """Send (topic, key, value) messages and return once the broker acknowledged every one.

    Messages are gathered into one batch per partition (the partition `send` would pick: the
    default partitioner, murmur2 of the key), which costs a third of sending them one by one.
    """
    partitions: dict[str, list[int]] = {}
    batches: dict[tuple[str, int], BatchBuilder] = {}
    pending: list[asyncio.Future[Any]] = []
    available: dict[str, list[int]] = {}
    for topic, key, value in messages:
        if topic not in partitions:
            partitions[topic] = sorted(await producer.partitions_for(topic))
            # As `send` does: a message without a key goes to a partition that has a leader.
            led = producer.client.cluster.available_partitions_for_topic(topic)
            available[topic] = sorted(led) if led else partitions[topic]
        target = (topic, partition_for(key, partitions[topic], available[topic]))
        batch = batches.get(target)
        if batch is None:
            batch = batches[target] = producer.create_batch()
        if batch.append(key=key, value=value, timestamp=None) is None:  # full: send it
            batch.close()
            pending.append(await producer.send_batch(batch, topic, partition=target[1]))
            batch = batches[target] = producer.create_batch()
            batch.append(key=key, value=value, timestamp=None)
    for (topic, partition), batch in batches.items():
        batch.close()
        pending.append(await producer.send_batch(batch, topic, partition=partition))
    await asyncio.gather(*pending)


def partition_for(key: bytes | None, partitions: Sequence[int], available: Sequence[int]) -> int:
    """The partition aiokafka's `DefaultPartitioner` (and the Java client's) picks for `key`:
    murmur2 of the key, made positive, modulo the partition count; a random partition that has a
    leader when there is no key."""
    if key is None:
        return random.choice(available or partitions)  # noqa: S311 (spreading load, not secrecy)
    return partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]


_KAFKA_SEED = 0x9747B28C


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`): MurmurHash2 with Kafka's
    seed, in compiled code (`murmurhash2`), a tenth of the cost of the same loop in Python. Tests
    compare it with aiokafka's `partitioner.murmur2` and with the Java client's known values."""
    value: int = murmurhash2.murmurhash2(data, _KAFKA_SEED)
    return value


def stop_on_signals(stop: asyncio.Event) -> None:
    """Set `stop` on SIGTERM or SIGINT, so the loop finishes its batch and exits cleanly."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


def broker_unavailable(error: BaseException) -> bool:
    """True for a fault of the broker or the network, which passes: retry, never dead-letter.

    A Kafka error the client marks not retriable (a message too large, say) is the message's.
    """
    if isinstance(error, SystemicFailure):
        return True
    if isinstance(error, (OSError, TimeoutError, KafkaTimeoutError, *_REFUSED_ACCESS)):
        return True  # an access refused is the cluster's configuration, never a message's
    return isinstance(error, KafkaError) and bool(error.retriable)


_REFUSED_ACCESS = (
    TopicAuthorizationFailedError,
    GroupAuthorizationFailedError,
    ClusterAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)


class SystemicFailure(Exception):
    """Several messages in a row failed and none was stored between: the fault is not the
    messages'. Treated as transient: the consumer blocks and retries instead of parking."""


class _Ownership(ConsumerRebalanceListener):  # type: ignore[misc]
    """Counts rebalances, so a batch fetched before one is known to be from an older assignment."""

    def __init__(self, group: str, metrics: Metrics, health: ConsumerHealth) -> None:
        self.group = group
        self.generation = 0
        self._owned = metrics.assigned_partitions.labels(group)
        self._health = health

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.generation += 1
        self._owned.set(0)
        self._health.left()
        if revoked:
            log.info("partitions revoked", extra={"group": self.group, "count": len(revoked)})

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        # The whole assignment: aiokafka rebalances eagerly (everything revoked, then assigned).
        self._owned.set(len(assigned))
        self._health.joined()
        log.info("partitions assigned", extra={"group": self.group, "count": len(assigned)})


class _Partition:
    """Processes one partition's records: the batch at once, or split until the message that
    fails is found; that one is tried a few times, then parked, and the rest go on."""

    def __init__(
        self,
        handler: BatchHandler,
        *,
        group: str,
        settings: Settings,
        metrics: Metrics,
        stop: asyncio.Event,
    ) -> None:
        self._handler = handler
        self._group = group
        self._settings = settings
        self._metrics = metrics
        self._stop = stop
        self._parked_in_a_row = 0

    async def at_once(self, records: Sequence[Record]) -> bool:
        """One try of every record together; False on any error (transient ones counted)."""
        try:
            await self._handler(records)
            self._parked_in_a_row = 0
            return True
        except Exception as exc:  # isolated next, partition by partition
            if self._handler.is_transient(exc):
                self._metrics.batch_failures.labels(self._group).inc()
            log.warning(
                "batch failed; processing its partitions one by one",
                extra={"group": self._group, "error": type(exc).__name__, "records": len(records)},
            )
            return False

    async def process(self, records: Sequence[Record], deadline: float) -> bool:
        """True once every record is stored or parked; False when a transient fault lasted until
        `deadline` (or a stop was asked): the records are to be fetched again."""
        delay = 0.2
        while True:
            try:
                await self._isolate(records)
                return True
            except Exception as exc:  # a transient fault (database or broker down): retried
                self._metrics.batch_failures.labels(self._group).inc()
                log.warning(
                    "batch failed; retrying",
                    extra={
                        "group": self._group,
                        "error": type(exc).__name__,
                        "records": len(records),
                    },
                )
            if self._stop.is_set() or time.monotonic() + delay > deadline:
                return False
            delay = min(delay, max(deadline - time.monotonic(), 0.0))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=delay)
            delay = min(delay * 2, 10.0)

    async def _isolate(self, records: Sequence[Record]) -> None:
        """Handle `records`; on an error of the data, halve until the failing message is alone.
        A transient error propagates: it is no message's fault."""
        try:
            await self._handler(records)
            self._parked_in_a_row = 0
            return
        except Exception as exc:
            if self._handler.is_transient(exc):
                raise
            if len(records) == 1:
                await self._retry_or_park(records[0], exc)
                return
        middle = len(records) // 2
        await self._isolate(records[:middle])
        await self._isolate(records[middle:])

    async def _retry_or_park(self, record: Record, error: Exception) -> None:
        tries = 1
        while tries < self._settings.poison_tries:
            await asyncio.sleep(0.05 * tries)  # a moment for a lock or a race to clear
            try:
                await self._handler([record])
                self._parked_in_a_row = 0
                return
            except Exception as exc:
                if self._handler.is_transient(exc):
                    raise
                error = exc
                tries += 1
        if self._parked_in_a_row >= self._settings.parked_in_a_row_limit:
            # Message after message failing, none stored between: a bug of ours or a schema out
            # of step, not bad data. Block and page (batch failures) rather than park them all.
            raise SystemicFailure(type(error).__name__)
        self._parked_in_a_row += 1
        log.error(  # the error's type only: its text may quote the message's values
            "message could not be processed; parked",
            extra={
                "group": self._group,
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "error": type(error).__name__,
                "tries": tries,
            },
        )
        if await self._handler.park(record, error, tries):  # counted once, however re-read
            self._metrics.unprocessable.labels(self._group, record.topic).inc()


async def _commit_owned(
    consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int], group: str
) -> None:
    """Commit the offsets of partitions this consumer still owns. A partition revoked meanwhile
    is re-read by its new owner from its last commit; idempotent writes absorb the repeat."""
    owned = consumer.assignment()
    mine = {tp: offset for tp, offset in offsets.items() if tp in owned}
    if not mine:
        return
    try:
        await consumer.commit(mine)
    except (CommitFailedError, IllegalStateError, KafkaError) as exc:
        log.warning(
            "offset commit refused after a rebalance; the new owner re-reads",
            extra={"group": group, "error": type(exc).__name__},
        )


async def _fetch(consumer: AIOKafkaConsumer, most: int) -> dict[TopicPartition, list[Record]]:
    """Wait up to 500 ms for records, then take what else is already fetched, up to `most`: a
    backlog is stored in few large transactions rather than many small ones."""
    batches: dict[TopicPartition, list[Record]] = await consumer.getmany(
        timeout_ms=500, max_records=most
    )
    count = sum(len(records) for records in batches.values())
    for _ in range(16):
        if not batches or count >= most:
            break
        more: dict[TopicPartition, list[Record]] = await consumer.getmany(
            timeout_ms=0, max_records=most - count
        )
        if not more:
            break
        for tp, records in more.items():
            batches.setdefault(tp, []).extend(records)
            count += len(records)
    return batches


async def consume_in_batches(
    consumer: AIOKafkaConsumer,
    handler: BatchHandler,
    *,
    group: str,
    settings: Settings,
    metrics: Metrics,
    stop: asyncio.Event,
    ownership: _Ownership | None = None,
    health: ConsumerHealth | None = None,
) -> None:
    """Fetch batches and store them: all partitions' records in one go when all is well, else
    each partition's on its own (halving until a failing message is found, which is parked).
    Each partition's offsets are committed once its records are stored or parked; a partition
    whose records hit a transient fault until the deadline is handed back (fetched again)."""
    partition = _Partition(handler, group=group, settings=settings, metrics=metrics, stop=stop)
    # Below the database pool's size, so partitions processed at once never wait for connections.
    at_once = asyncio.Semaphore(settings.partitions_at_once)

    async def alone(records: Sequence[Record], deadline: float) -> bool:
        async with at_once:
            return await partition.process(records, deadline)

    async def stored(batches: dict[TopicPartition, list[Record]]) -> dict[TopicPartition, int]:
        """Process one fetch; the offsets to commit (a partition not stored is fetched again)."""
        generation = ownership.generation if ownership else 0
        # Every partition's records in one go (one transaction, one durable commit) when all is
        # well; else each partition on its own, so a failing one does not hold the others.
        if await partition.at_once([r for records in batches.values() for r in records]):
            done = [True] * len(batches)
        else:
            # One deadline for them all, so a fetch is handed back within `batch_retry_seconds`
            # (well inside max_poll_interval) however many partitions wait their turn.
            deadline = time.monotonic() + settings.batch_retry_seconds
            done = await asyncio.gather(*(alone(records, deadline) for records in batches.values()))
        offsets: dict[TopicPartition, int] = {}
        for (tp, records), ok in zip(batches.items(), done, strict=True):
            if ok:
                offsets[tp] = records[-1].offset + 1
            else:
                with contextlib.suppress(IllegalStateError):  # revoked meanwhile: not ours
                    if tp in consumer.assignment():
                        consumer.seek(tp, records[0].offset)
        if ownership and ownership.generation != generation:
            log.info("a rebalance happened during the batch", extra={"group": group})
        return offsets

    # A fetch's commit is sent while the next fetch is processed (its outputs are durable
    # already); each commit is awaited before the next is sent, so they reach the broker in
    # order, and the last before the consumer leaves. A router waited a tenth of its time on them.
    committing: asyncio.Task[None] | None = None
    try:
        while not stop.is_set():
            if health is not None:
                health.loop_ran()
            batches = await _fetch(consumer, settings.batch_max_records)
            if not batches:
                continue
            offsets = await stored(batches)
            if committing is not None:
                await committing
            committing = asyncio.create_task(_commit_owned(consumer, offsets, group))
    finally:
        if committing is not None:
            await committing


async def watch_lag(
    consumer: AIOKafkaConsumer,
    admin: AIOKafkaAdminClient,
    *,
    group: str,
    topics: Sequence[str],
    metrics: Metrics,
    interval: float,
    stop: asyncio.Event,
    health: ConsumerHealth | None = None,
) -> None:
    """Every `interval`, set `csae_consumer_lag{group,topic}` from the broker: the end offsets
    less the group's committed offsets. It rises while the group is stuck or gone. A read that
    reached the broker tells `health` the broker answers."""
    while not stop.is_set():
        try:
            lag = await group_lag(consumer, admin, group, topics)
            for topic, behind in lag.items():
                metrics.consumer_lag.labels(group, topic).set(behind)
            if lag and health is not None:
                health.broker_answered()
        except Exception as exc:  # the gauge keeps its last value; the next round tries again
            log.warning(
                "consumer lag not read", extra={"group": group, "error": type(exc).__name__}
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)


async def group_lag(
    consumer: AIOKafkaConsumer, admin: AIOKafkaAdminClient, group: str, topics: Sequence[str]
) -> dict[str, int]:
    """Per topic, how many messages the group has not committed yet (from the broker)."""
    partitions = [
        TopicPartition(topic, p)
        for topic in topics
        for p in sorted(consumer.partitions_for_topic(topic) or ())
    ]
    if not partitions:
        return {}
    committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
    ends = await consumer.end_offsets(partitions)
    starts = await consumer.beginning_offsets(partitions)
    lag = dict.fromkeys(topics, 0)
    for tp in partitions:
        meta = committed.get(tp)
        position = meta.offset if meta is not None and meta.offset >= 0 else starts[tp]
        lag[tp.topic] += max(ends[tp] - position, 0)
    return lag


def consumer_health(settings: Settings, *, needs_database: bool = False) -> ConsumerHealth:
    """A consumer's health with the settings' thresholds: stalled after
    `consumer_stall_seconds` without a round; the broker's (and database's) last answer may be
    three check intervals old, and the check's own timeout."""
    return ConsumerHealth(
        stall_seconds=settings.consumer_stall_seconds,
        stale_seconds=3 * settings.lag_interval_seconds + HEALTH_CHECK_TIMEOUT,
        needs_database=needs_database,
    )


HEALTH_CHECK_TIMEOUT = 5.0
"""Seconds a readiness check (the database's) may take before it counts as no answer."""


async def run_consumer_service(
    settings: Settings,
    *,
    group: str,
    topics: Sequence[str],
    metrics: Metrics,
    build_handler: Callable[[AIOKafkaProducer], BatchHandler],
    stop: asyncio.Event,
    health: ConsumerHealth | None = None,
) -> None:
    """Run one consumer group member until `stop` is set, then flush, commit and leave the group.
    `health` (served on /healthz and /readyz) hears of each round, rebalance and lag read."""
    health = health or consumer_health(settings)
    await ensure_topics(settings)
    producer = new_producer(settings)
    consumer = new_consumer(settings, group)
    admin = AIOKafkaAdminClient(**client_options(settings))
    ownership = _Ownership(group, metrics, health)
    consumer.subscribe(list(topics), listener=ownership)
    # Export the counters that alerts watch at 0 from the start: `increase()` cannot see the
    # first event of a series that appears with it.
    metrics.batch_failures.labels(group)
    for topic in topics:
        metrics.unprocessable.labels(group, topic)
    await producer.start()
    try:
        await consumer.start()
        await admin.start()
        lag = asyncio.create_task(
            watch_lag(
                consumer,
                admin,
                group=group,
                topics=topics,
                metrics=metrics,
                interval=settings.lag_interval_seconds,
                stop=stop,
                health=health,
            )
        )
        loop_lag = asyncio.create_task(watch_event_loop(metrics, stop))
        try:
            log.info("consuming", extra={"group": group, "topics": ",".join(topics)})
            await consume_in_batches(
                consumer,
                build_handler(producer),
                group=group,
                settings=settings,
                metrics=metrics,
                stop=stop,
                ownership=ownership,
                health=health,
            )
        finally:
            stop.set()
            await lag
            await loop_lag
            await admin.close()
            await consumer.stop()
    finally:
        await producer.stop()
    log.info("stopped", extra={"group": group})
