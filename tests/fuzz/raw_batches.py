"""Records no Kafka client would write: header names as arbitrary bytes.

aiokafka (like every client) takes header names as text and encodes them as UTF-8, so it
cannot write a record whose header name is not UTF-8; other producers (a librdkafka
client, a proxy, a bit flip) can. :func:`encode_batch` builds a Kafka v2 record batch
from raw bytes and :func:`produce_raw` appends it through aiokafka's producer
(``send_batch``), so the broker stores exactly those bytes.

Example::

    await produce_raw(bootstrap, "pings", 0, [RawRecord(b"k", b"{}", ((b"\\xff", b"v"),))])
"""

from __future__ import annotations

import struct
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

from aiokafka import AIOKafkaProducer
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.util import calc_crc32c, encode_varint


class RawRecord(NamedTuple):
    key: bytes | None
    value: bytes | None
    #: (name, value) pairs: the name as bytes, any bytes at all; value None = null.
    headers: Sequence[tuple[bytes, bytes | None]] = ()


def _varint(value: int, out: bytearray) -> None:
    encode_varint(value, out.append)


def _bytes_field(data: bytes | None, out: bytearray) -> None:
    if data is None:
        _varint(-1, out)
    else:
        _varint(len(data), out)
        out += data


def encode_batch(records: Sequence[RawRecord], *, timestamp_ms: int | None = None) -> bytes:
    """One uncompressed v2 record batch (base offset 0: the broker assigns offsets)."""
    now = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    body = bytearray()
    for i, r in enumerate(records):
        rec = bytearray()
        rec.append(0)  # attributes
        _varint(0, rec)  # timestamp delta
        _varint(i, rec)  # offset delta
        _bytes_field(r.key, rec)
        _bytes_field(r.value, rec)
        _varint(len(r.headers), rec)
        for name, value in r.headers:
            _varint(len(name), rec)
            rec += name
            _bytes_field(value, rec)
        _varint(len(rec), body)
        body += rec
    # attributes .. records: what the CRC covers
    after_crc = (
        struct.pack(">hiqqqhii", 0, len(records) - 1, now, now, -1, -1, -1, len(records)) + body
    )
    crc = calc_crc32c(after_crc)
    # partition leader epoch, magic, crc
    after_length = struct.pack(">ibI", -1, 2, crc) + after_crc
    return struct.pack(">qi", 0, len(after_length)) + after_length


class _RawBatch(BatchBuilder):  # type: ignore[misc]
    """A batch built already: aiokafka's sender only asks for its bytes and count."""

    def __init__(self, data: bytes, count: int) -> None:
        self._buffer = data
        self._relative_offset = count
        self._closed = True

    def append(self, **_: Any) -> None:
        return None


async def produce_raw(
    bootstrap: str, topic: str, partition: int, batches: Sequence[Sequence[RawRecord]]
) -> None:
    """Append each batch of ``batches`` to ``topic[partition]``, in order; wait for the acks."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, acks=1)
    await producer.start()
    try:
        for records in batches:
            future = await producer.send_batch(
                _RawBatch(encode_batch(records), len(records)), topic, partition=partition
            )
            await future
    finally:
        await producer.stop()
