"""bus.ids: UUIDv7 (RFC 9562) ids that sort by creation time."""

from __future__ import annotations

import re
import time
import uuid

from hypothesis import given
from hypothesis import strategies as st

from bus.ids import new_id, uuid7_from

MAX_MS = (1 << 48) - 1
unix_ms = st.integers(min_value=0, max_value=MAX_MS)
random_bits = st.binary(min_size=10, max_size=10)
CANONICAL = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


@given(unix_ms, random_bits)
def test_uuid7_from_is_version_7_with_rfc_variant(ms: int, rand: bytes) -> None:
    parsed = uuid.UUID(uuid7_from(ms, rand))
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122


@given(unix_ms, random_bits)
def test_uuid7_from_is_canonical_lowercase_text(ms: int, rand: bytes) -> None:
    text = uuid7_from(ms, rand)
    assert CANONICAL.match(text)
    assert str(uuid.UUID(text)) == text


@given(unix_ms, random_bits)
def test_uuid7_from_carries_the_millisecond_timestamp_in_its_top_48_bits(
    ms: int, rand: bytes
) -> None:
    assert uuid.UUID(uuid7_from(ms, rand)).int >> 80 == ms


@given(unix_ms, random_bits)
def test_uuid7_from_keeps_74_random_bits(ms: int, rand: bytes) -> None:
    value = uuid.UUID(uuid7_from(ms, rand)).int
    rand_int = int.from_bytes(rand, "big")
    assert (value >> 64) & 0xFFF == rand_int >> 68  # rand_a: top 12 random bits
    assert value & ((1 << 62) - 1) == rand_int & ((1 << 62) - 1)  # rand_b: low 62 bits


@given(unix_ms, unix_ms, random_bits, random_bits)
def test_ids_sort_by_their_millisecond_timestamp(
    ms1: int, ms2: int, rand1: bytes, rand2: bytes
) -> None:
    a, b = uuid7_from(ms1, rand1), uuid7_from(ms2, rand2)
    if ms1 < ms2:
        assert a < b
        assert uuid.UUID(a) < uuid.UUID(b)
    elif ms1 > ms2:
        assert a > b


@given(unix_ms, random_bits)
def test_uuid7_from_is_pure(ms: int, rand: bytes) -> None:
    assert uuid7_from(ms, rand) == uuid7_from(ms, rand)


def test_uuid7_from_differs_when_random_bits_differ() -> None:
    assert uuid7_from(1, bytes(10)) != uuid7_from(1, bytes(9) + b"\x01")


def test_new_id_is_36_character_uuid7() -> None:
    text = new_id()
    assert len(text) == 36
    assert uuid.UUID(text).version == 7


def test_new_id_carries_the_wall_clock_millisecond() -> None:
    before = time.time_ns() // 1_000_000
    ms = uuid.UUID(new_id()).int >> 80
    after = time.time_ns() // 1_000_000
    assert before <= ms <= after


def test_new_id_is_unique_over_10000_calls() -> None:
    ids = [new_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)


def test_new_ids_made_in_later_milliseconds_sort_later() -> None:
    first = new_id()
    time.sleep(0.003)  # well past the next wall-clock millisecond
    assert new_id() > first


def test_new_ids_are_canonical_distinct_and_use_every_variant_digit() -> None:
    ids = [new_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    assert all(CANONICAL.match(i) and uuid.UUID(i).variant == uuid.RFC_4122 for i in ids)
    assert {i[19] for i in ids} == set("89ab")  # its two random bits vary
