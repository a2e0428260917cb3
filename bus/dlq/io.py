"""The dead-letter topics on the broker: list them, read a snapshot of them, send replays.

The shell of ``bus dlq``: it reads through a :class:`~bus.transports.base.Transport`
with a group-less consumer (nothing changes on the broker) and sends the records a
:class:`~bus.dlq.letters.ReplayPlan` decided.

Example::

    letters = await read_dead_letters(transport, await list_dead_letter_topics(transport))
    sent = await replay_dead_letters(transport, plan_replay(letters, max_replays=3))
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Sequence

from bus.dlq.letters import DLQ_SUFFIX, DeadLetter, ReplayPlan
from bus.errors import ConfigError, TransportError
from bus.record import Record, TopicPartition
from bus.transports.base import Consumer, Delivery, Transport

__all__ = [
    "READ_CONCURRENCY",
    "list_dead_letter_topics",
    "read_dead_letters",
    "replay_dead_letters",
]


async def list_dead_letter_topics(transport: Transport, wanted: Sequence[str] = ()) -> list[str]:
    """The dead-letter topics to scan: every ``*.dlq`` topic, or those named in ``wanted``.

    A wanted name not ending in ``.dlq`` means ``NAME.dlq`` when that exists (so
    ``--topic hr.events`` works as well as ``--topic hr.events.dlq``), else ``NAME`` itself
    (a dead-letter topic named by ``App(dead_letter_topic=...)``).
    """
    existing = set(await transport.list_topics())
    if not wanted:
        return sorted(t for t in existing if t.endswith(DLQ_SUFFIX))
    out: list[str] = []
    for name in wanted:
        if not name.endswith(DLQ_SUFFIX) and name + DLQ_SUFFIX in existing:
            out.append(name + DLQ_SUFFIX)
        elif name in existing:
            out.append(name)
        else:
            raise ConfigError(
                f"--topic {name!r}: neither {name!r} nor {name + DLQ_SUFFIX!r} exists "
                "(list them with 'bus dlq list' without --topic)"
            )
    return out


#: Consumers reading dead-letter topics at once; more topics are dealt among them. 300
#: topics of 3 partitions on a local Tansu, first read: one consumer for all 4.5-7.8 s,
#: dealt among 16 1.2-1.5 s, one consumer per topic 10-11 s (a connection and a metadata
#: round trip each).
READ_CONCURRENCY = 16


async def read_dead_letters(
    transport: Transport,
    topics: Sequence[str],
    *,
    keep: Callable[[DeadLetter], bool] | None = None,
    timeout_s: float = 60.0,
    quiet_s: float = 2.0,
    concurrency: int = READ_CONCURRENCY,
    on_progress: Callable[[int, int], None] | None = None,
) -> list[DeadLetter]:
    """Every record of ``topics`` up to the end of each partition as first seen (only
    those ``keep`` accepts, if given: the others are not held in memory).

    The topics are dealt among at most ``concurrency`` group-less consumers reading at
    once (no offsets committed, nothing changes on the broker); ``on_progress(done,
    total)`` counts the topics read. The letters come back in the order of ``topics``,
    each topic's by partition and offset, however the reads interleave. The end of a
    partition is its high watermark as the consumer first sees it on a fetch (on Tansu
    ``end_offsets()`` is wrong, see README); records appended later are not read.
    ``quiet_s`` of empty fetches after every end is known also ends a read (a log whose
    last offsets are not records, e.g. transaction markers). ``timeout_s`` without
    progress is a :class:`~bus.errors.TransportError`.

    Example::

        letters = await read_dead_letters(transport, ["hr.events.dlq", "it.events.dlq"])
    """
    if concurrency < 1:
        raise ConfigError("concurrency must be at least 1")
    names = list(dict.fromkeys(topics))  # a topic named twice is read once
    readers = min(concurrency, len(names))
    shares = [names[i::readers] for i in range(readers)]
    read = 0

    async def read_share(share: list[str]) -> list[DeadLetter]:
        nonlocal read
        letters = await _read_topics(transport, share, keep, timeout_s, quiet_s)
        read += len(share)
        if on_progress is not None:
            on_progress(read, len(names))
        return letters

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(read_share(share)) for share in shares]
    except ExceptionGroup as failed:  # the first reader's error, as one read would raise it
        raise failed.exceptions[0] from None
    place = {topic: i for i, topic in enumerate(names)}
    return sorted(
        (d for task in tasks for d in task.result()),
        key=lambda d: (place.get(d.record.topic, len(names)), d.record.partition, d.record.offset),
    )


async def _read_topics(
    transport: Transport,
    topics: list[str],
    keep: Callable[[DeadLetter], bool] | None,
    timeout_s: float,
    quiet_s: float,
) -> list[DeadLetter]:
    consumer = transport.consumer(topics, group=None)
    await consumer.start()
    try:
        return await _read_to_end(consumer, topics, keep, timeout_s, quiet_s)
    finally:
        await consumer.stop()


async def _read_to_end(
    consumer: Consumer,
    topics: list[str],
    keep: Callable[[DeadLetter], bool] | None,
    timeout_s: float,
    quiet_s: float,
) -> list[DeadLetter]:
    snapshot = _Snapshot(consumer)
    out: list[DeadLetter] = []
    deadline = time.monotonic() + timeout_s
    quiet_since = time.monotonic()
    snapshot.note_ends()
    while not snapshot.finished():
        if time.monotonic() > deadline:
            raise TransportError(
                f"could not read {', '.join(topics)} to its end: no progress for "
                f"{timeout_s:.0f}s (--read-timeout-s) "
                f"(partitions without a known end: {snapshot.unknown() or 'none'}); "
                "is the broker up?"
            )
        batches = await consumer.fetch(max_records=1000, timeout_s=0.2)
        snapshot.note_ends()
        if not batches:
            if snapshot.ends_known() and time.monotonic() - quiet_since > quiet_s:
                break
            continue
        quiet_since = time.monotonic()
        deadline = quiet_since + timeout_s  # a deadline for progress, not for the read
        for tp, records in batches.items():
            for record in snapshot.before_end(tp, records):
                d = DeadLetter.from_record(record)
                if keep is None or keep(d):
                    out.append(d)
    return out


class _Snapshot:
    """A consumer's partitions: where each ends (its high watermark as first seen) and
    how far it has been read."""

    def __init__(self, consumer: Consumer) -> None:
        self._consumer = consumer
        self._tps = consumer.assignment()
        self._ends: dict[TopicPartition, int] = {}
        self._next: dict[TopicPartition, int] = {}

    def note_ends(self) -> None:
        for tp in self._tps:
            if tp not in self._ends:
                hw = self._consumer.highwater(tp)
                if hw is not None:
                    self._ends[tp] = hw

    def ends_known(self) -> bool:
        return len(self._ends) == len(self._tps)

    def unknown(self) -> list[TopicPartition]:
        return sorted(tp for tp in self._tps if tp not in self._ends)

    def finished(self) -> bool:
        return self.ends_known() and all(
            self._next.get(tp, -1) >= end or end == 0 for tp, end in self._ends.items()
        )

    def before_end(self, tp: TopicPartition, records: Sequence[Record]) -> list[Record]:
        """``records`` of ``tp`` (in offset order) up to its end (all of them while the end
        is unknown); the partition counts as read up to the last of ``records``."""
        if records:
            self._next[tp] = records[-1].offset + 1
        end = self._ends.get(tp)
        if end is None:
            return list(records)
        return list(itertools.takewhile(lambda record: record.offset < end, records))


async def replay_dead_letters(
    transport: Transport,
    plan: ReplayPlan,
    *,
    on_progress: Callable[[int, int], None] | None = None,
) -> int:
    """Send the records of ``plan`` (waiting for every acknowledgement); the count sent."""
    total = len(plan.send)
    pending: list[Delivery] = []
    for done, (_, record) in enumerate(plan.send, start=1):
        pending.append(await transport.send(record))
        if len(pending) >= 500:  # bounded: wait for a window of acks before sending on
            await _acked(pending)
            pending.clear()
        if on_progress is not None:
            on_progress(done, total)
    await _acked(pending)
    return total


async def _acked(deliveries: list[Delivery]) -> None:
    for delivery in deliveries:
        await delivery  # a failure is a BusError already (the transport translated it)
