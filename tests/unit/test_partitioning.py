"""bus.partitioning: Kafka's murmur2 and default partitioner, bit for bit."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from bus.partitioning import murmur2, partition_for_key

# From Kafka's org.apache.kafka.common.utils.UtilsTest#testMurmur2.
KAFKA_VECTORS = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]


@pytest.mark.parametrize(("key", "expected"), KAFKA_VECTORS)
def test_murmur2_matches_kafka_utils_test_vectors(key: bytes, expected: int) -> None:
    assert murmur2(key) == expected


def test_murmur2_is_signed_like_java() -> None:
    assert murmur2(b"foobar") < 0
    assert murmur2(b"abc") > 0


def test_murmur2_of_empty_key_is_a_32_bit_int() -> None:
    assert -(2**31) <= murmur2(b"") < 2**31
    assert murmur2(b"") & 0xFFFFFFFF == aiokafka_murmur2(b"")


@given(st.binary(max_size=256))
def test_murmur2_equals_aiokafkas_hash_as_unsigned(key: bytes) -> None:
    assert murmur2(key) & 0xFFFFFFFF == aiokafka_murmur2(key)


@given(st.binary(max_size=256))
def test_murmur2_stays_in_signed_32_bit_range(key: bytes) -> None:
    assert -(2**31) <= murmur2(key) < 2**31


@given(st.binary(max_size=128), st.integers(min_value=1, max_value=10_000))
def test_keyed_record_lands_where_kafka_puts_it(key: bytes, partitions: int) -> None:
    expected = (aiokafka_murmur2(key) & 0x7FFFFFFF) % partitions
    assert partition_for_key(key, partitions) == expected


@given(st.binary(min_size=1, max_size=64), st.integers(min_value=1, max_value=64))
def test_partition_agrees_with_aiokafka_default_partitioner(key: bytes, partitions: int) -> None:
    all_partitions = list(range(partitions))
    chosen = DefaultPartitioner()(key, all_partitions, all_partitions)
    assert partition_for_key(key, partitions) == chosen


@given(st.binary(max_size=128), st.integers(min_value=1, max_value=100_000))
def test_partition_is_always_in_range(key: bytes, partitions: int) -> None:
    assert 0 <= partition_for_key(key, partitions) < partitions


@given(st.binary(max_size=64))
def test_single_partition_topic_always_gets_partition_zero(key: bytes) -> None:
    assert partition_for_key(key, 1) == 0


def test_foobar_on_six_partitions_goes_to_partition_zero_as_documented() -> None:
    assert partition_for_key(b"foobar", 6) == 0


@pytest.mark.parametrize("partitions", [0, -1, -100])
def test_non_positive_partition_count_raises_value_error(partitions: int) -> None:
    with pytest.raises(ValueError, match="partitions must be positive"):
        partition_for_key(b"key", partitions)
