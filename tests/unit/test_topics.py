"""Topics are grown to the wanted partition count even when the broker describes a topic just
created without its partitions for a moment (seen under load: the topic kept too few)."""

from typing import Any

from services.pipeline.kafka import _partition_counts


class _Broker:
    """Describes a topic without partitions, then with an error, then as it is."""

    def __init__(self) -> None:
        self.calls = 0

    async def describe_topics(self, topics: list[str]) -> list[dict[str, Any]]:
        self.calls += 1
        if self.calls == 1:
            return [{"topic": t, "error_code": 0, "partitions": []} for t in topics]
        if self.calls == 2:
            return [{"topic": t, "error_code": 3, "partitions": []} for t in topics]
        return [{"topic": t, "error_code": 0, "partitions": [{}, {}, {}]} for t in topics]


async def test_partitions_are_counted_once_the_broker_describes_every_topic() -> None:
    broker = _Broker()
    counts = await _partition_counts(broker, ["a", "b"])
    assert counts == {"a": 3, "b": 3}
    assert broker.calls == 3


async def test_a_topic_never_described_is_left_out_after_the_deadline() -> None:
    class Silent:
        async def describe_topics(self, topics: list[str]) -> list[dict[str, Any]]:
            return [{"topic": t, "error_code": 3, "partitions": []} for t in topics]

    assert await _partition_counts(Silent(), ["a"], within=0.3) == {}
