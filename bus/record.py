"""Records as the transport sees them: bytes, headers, positions. No message types here."""

from __future__ import annotations

from typing import NamedTuple

from bus.types import Headers

__all__ = ["OutgoingRecord", "Record", "RecordMetadata", "TopicPartition"]


class TopicPartition(NamedTuple):
    """One partition of one topic (the same shape as aiokafka's)."""

    topic: str
    partition: int


class Record(NamedTuple):
    """A record read from a topic (immutable).

    A NamedTuple: the memory log holds every record, and tuples of atomic values are
    untracked by the garbage collector, so a long log does not slow down every collection.

    Example::

        Record(topic="hr", partition=0, offset=41, key=b"u-1", value=b"{}", headers=())
    """

    topic: str
    #: Partition number, 0-based.
    partition: int
    #: Position in the partition, 0-based; the committed offset is "next to read" (offset + 1).
    offset: int
    #: Partition key bytes (the entity id), or None.
    key: bytes | None
    #: Record value (binary-mode CloudEvent: the data; structured mode: the whole event).
    value: bytes | None
    #: Headers in the order they were written.
    headers: Headers = ()
    #: Broker or producer timestamp in milliseconds since the epoch; 0 when unknown.
    timestamp_ms: int = 0

    @property
    def topic_partition(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)

    def header(self, name: str) -> bytes | None:
        """The last value of header ``name``, or None."""
        found = None
        for k, v in self.headers:
            if k == name:
                found = v
        return found


class OutgoingRecord(NamedTuple):
    """A record to append to a topic (immutable).

    ``partition`` None means: chosen from the key by Kafka's default partitioner.
    """

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers = ()
    partition: int | None = None

    def size_bytes(self) -> int:
        """Approximate wire size (key + value + headers), as checked against size limits."""
        size = len(self.key or b"") + len(self.value or b"")
        for k, v in self.headers:
            size += len(k) + len(v)
        return size


class RecordMetadata(NamedTuple):
    """Where the transport acknowledged an appended record."""

    topic: str
    partition: int
    offset: int
