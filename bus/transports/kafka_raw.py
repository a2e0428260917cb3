"""Records aiokafka cannot decode, read from the raw bytes of a partition.

aiokafka decodes every header name as UTF-8 while it iterates a fetched batch; a name that
is not UTF-8 (any producer but a Kafka client can write one) raises ``UnicodeDecodeError``
out of ``getmany`` for every fetch of that partition, forever: the consumer cannot move
past the record, nor read the records behind it in the same batch. The Kafka consumer
(:meth:`bus.transports.kafka_consumer.KafkaConsumer.fetch`) then reads the partition here: one
Fetch request of its own, and :func:`parse_batches`, which keeps an undecodable header
name as text with its bytes escaped (``surrogateescape``: no UTF-8 name has lone
surrogates, so the codec tells such a record apart and dead-letters it as ``decode``,
and the bytes come back exactly with ``name.encode("utf-8", "surrogateescape")``).

Only the v2 record format (Kafka 0.11+) has headers; a legacy message set in the window is
refused (:class:`ValueError`): the caller cannot recover that partition here.

Example::

    data = await fetch_raw(client, tp, offset=41, max_bytes=1_048_576)
    records, next_offset = parse_batches(data, tp.topic, tp.partition, from_offset=41)
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from aiokafka import TopicPartition as KafkaTopicPartition
from aiokafka.codec import gzip_decode, lz4_decode, snappy_decode, zstd_decode
from aiokafka.errors import KafkaError, for_code
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.record.util import decode_varint

from bus.errors import TransportError
from bus.record import Record, TopicPartition

__all__ = ["fetch_raw", "has_undecodable_header", "parse_batches"]

# baseOffset, batchLength (the size of everything after it)
_PREFIX = struct.Struct(">qi")
# partitionLeaderEpoch, magic, crc, attributes, lastOffsetDelta, baseTimestamp,
# maxTimestamp, producerId, producerEpoch, baseSequence, record count
_HEADER = struct.Struct(">ibIhiqqqhii")
_COMPRESSION: dict[int, Callable[[Any], bytes]] = {
    1: gzip_decode,
    2: snappy_decode,
    3: lz4_decode,
    4: zstd_decode,
}
_CONTROL = 0x20
_LOG_APPEND_TIME = 0x08


def has_undecodable_header(record: Record) -> bool:
    """Whether a header name of ``record`` came from bytes that are not UTF-8."""
    return any(_undecodable(name) for name, _ in record.headers)


def _undecodable(name: str) -> bool:
    if name.isascii():
        return False
    try:
        name.encode()
    except UnicodeEncodeError:
        return True
    return False


def parse_batches(
    data: bytes, topic: str, partition: int, *, from_offset: int
) -> tuple[list[Record], int]:
    """The records at ``from_offset`` or later in the whole batches of ``data``, and the
    offset after the last whole batch (``from_offset`` if there is none).

    A fetch answer may end in a partial batch (cut at the size limit): it is left out,
    the next read starts there. Control batches (transaction markers) hold no records.
    """
    view = memoryview(data)
    records: list[Record] = []
    next_offset = from_offset
    pos = 0
    while pos + _PREFIX.size <= len(view):
        base_offset, length = _PREFIX.unpack_from(view, pos)
        end = pos + _PREFIX.size + length
        if end > len(view):
            break  # partial batch
        (_, magic, _, attributes, last_delta, base_ts, max_ts, *_, count) = _HEADER.unpack_from(
            view, pos + _PREFIX.size
        )
        if magic != 2:
            raise ValueError(f"record format v{magic} at offset {base_offset} (only v2 is read)")
        body_at = pos + _PREFIX.size + _HEADER.size
        if not attributes & _CONTROL:
            body: bytes | memoryview = view[body_at:end]
            codec = _COMPRESSION.get(attributes & 0x07)
            if codec is not None:
                body = codec(bytes(body))
            log_time = max_ts if attributes & _LOG_APPEND_TIME else None
            for r in _records(bytearray(body), count, base_offset, base_ts, log_time):
                if r[0] >= from_offset:
                    records.append(Record(topic, partition, *r))
        next_offset = max(next_offset, base_offset + last_delta + 1)
        pos = end
    return records, next_offset


def _records(
    buf: bytearray, count: int, base_offset: int, base_ts: int, log_time: int | None
) -> list[tuple[int, bytes | None, bytes | None, tuple[tuple[str, bytes], ...], int]]:
    out = []
    pos = 0
    for _ in range(count):
        _, pos = decode_varint(buf, pos)  # record length
        pos += 1  # attributes (unused)
        ts_delta, pos = decode_varint(buf, pos)
        offset_delta, pos = decode_varint(buf, pos)
        key, pos = _field(buf, pos)
        value, pos = _field(buf, pos)
        header_count, pos = decode_varint(buf, pos)
        headers = []
        for _ in range(header_count):
            name, pos = _field(buf, pos)
            raw, pos = _field(buf, pos)
            text = (name or b"").decode("utf-8", "surrogateescape")
            headers.append((text, raw))
        timestamp = log_time if log_time is not None else base_ts + ts_delta
        out.append((base_offset + offset_delta, key, value, tuple(headers), timestamp))
    return out  # type: ignore[return-value]  # a null header value is None, as aiokafka's


def _field(buf: bytearray, pos: int) -> tuple[bytes | None, int]:
    length, pos = decode_varint(buf, pos)
    if length < 0:
        return None, pos
    return bytes(buf[pos : pos + length]), pos + length


async def fetch_raw(client: Any, tp: TopicPartition, *, offset: int, max_bytes: int) -> bytes:
    """The record bytes of ``tp`` from ``offset`` (one Fetch request to its leader).

    ``client`` is the consumer's ``AIOKafkaClient``. Read uncommitted, as the consumer
    does by default; :class:`~bus.errors.TransportError` if the broker does not answer.
    """
    node = client.cluster.leader_for_partition(KafkaTopicPartition(*tp))
    if node is None or node < 0:
        raise TransportError(f"kafka: no leader known for {tp.topic}[{tp.partition}]")
    request = FetchRequest(100, 1, max_bytes, 0, [(tp.topic, [(tp.partition, offset, max_bytes)])])
    try:
        response = await client.send(node, request)
    except KafkaError as exc:
        raise TransportError(
            f"kafka: raw read of {tp.topic}[{tp.partition}] failed: {exc!r}"
        ) from exc
    for _, partitions in response.topics:
        for _, error_code, _, *part_data in partitions:
            if error_code:
                raise TransportError(
                    f"kafka: raw read of {tp.topic}[{tp.partition}] failed: "
                    f"{for_code(error_code).__name__}"
                )
            return bytes(part_data[-1] or b"")
    return b""


async def read_past_undecodable(
    consumer: Any,
    owned: frozenset[TopicPartition],
    next_offsets: dict[TopicPartition, int],
    *,
    earliest: bool,
    max_bytes: int,
) -> dict[TopicPartition, list[Record]]:
    """After ``getmany`` raised ``UnicodeDecodeError``: the records of every partition
    that holds an undecodable record, read raw up to the end of the window, with the
    consumer (an ``AIOKafkaConsumer``) moved past them; empty if no partition holds one.

    ``next_offsets`` is where each partition stands as far as the caller handed records
    on. The failed ``getmany`` may have advanced other partitions past records it then
    did not return, so every owned partition is moved back there first (a partition never
    handed on goes back to its committed offset, or with ``earliest`` to its beginning).
    """
    ktp = {tp: KafkaTopicPartition(*tp) for tp in owned}
    paused = set(consumer.paused())
    positions: dict[TopicPartition, int] = {}
    for tp, k in ktp.items():
        at = next_offsets.get(tp)
        if at is None:
            committed = await consumer.committed(k)
            if committed is not None:
                at = int(committed)
            elif earliest:
                await consumer.seek_to_beginning(k)
        if at is not None:
            consumer.seek(k, at)
        if k not in paused:
            positions[tp] = int(await consumer.position(k))
    client = consumer._client  # aiokafka's own connections (no public handle)
    out: dict[TopicPartition, list[Record]] = {}
    for tp, at in positions.items():
        data = await fetch_raw(client, tp, offset=at, max_bytes=max_bytes)
        records, after = parse_batches(data, tp.topic, tp.partition, from_offset=at)
        if any(has_undecodable_header(r) for r in records):
            out[tp] = records
            consumer.seek(ktp[tp], after)
            next_offsets[tp] = after
    return out
