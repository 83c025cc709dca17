"""Messages go to the partition the Kafka clients would pick: a case's tasks stay in order only if
every producer (ours, aiokafka's `send`, the Java client) hashes its key to the same partition."""

from aiokafka.partitioner import DefaultPartitioner, murmur2
from hypothesis import given
from hypothesis import strategies as st

from services.pipeline import kafka


@given(st.binary(max_size=600))
def test_murmur2_is_kafkas(data: bytes) -> None:
    assert kafka.murmur2(data) == murmur2(data)


@given(st.binary(min_size=1, max_size=200), st.integers(min_value=1, max_value=64))
def test_a_key_goes_where_the_default_partitioner_sends_it(key: bytes, count: int) -> None:
    partitions = list(range(count))
    assert kafka.partition_for(key, partitions, partitions) == DefaultPartitioner()(
        key, partitions, partitions
    )


def test_known_values_of_the_java_client() -> None:
    # From Kafka's own tests (UtilsTest.testMurmur2), as signed 32-bit Java ints.
    cases = {
        b"21": -973932308,
        b"foobar": -790332482,
        b"a-little-bit-long-string": -985981536,
        b"a-little-bit-longer-string": -1486304829,
        b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
        b"abc": 479470107,
    }
    for data, expected in cases.items():
        assert kafka.murmur2(data) == expected & 0xFFFFFFFF


def test_a_keyless_message_goes_to_a_partition_with_a_leader() -> None:
    assert all(kafka.partition_for(None, [0, 1, 2, 3], [2]) == 2 for _ in range(50))
