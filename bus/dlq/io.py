"""The dead-letter topics on the broker: list them, read a snapshot of them, send replays.

The shell of ``bus dlq``: it reads through a :class:`~bus.transports.base.Transport`
with a group-less consumer (nothing changes on the broker) and sends the records a
:class:`~bus.dlq.letters.ReplayPlan` decided.

Example::

    letters = await read_dead_letters(transport, await list_dead_letter_topics(transport))
    sent = await replay_dead_letters(transport, plan_replay(letters, max_replays=3))
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from bus.dlq.letters import DLQ_SUFFIX, DeadLetter, ReplayPlan
from bus.errors import ConfigError, TransportError
from bus.record import TopicPartition
from bus.transports.base import Delivery, Transport

__all__ = ["list_dead_letter_topics", "read_dead_letters", "replay_dead_letters"]


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


async def read_dead_letters(
    transport: Transport,
    topics: Sequence[str],
    *,
    keep: Callable[[DeadLetter], bool] | None = None,
    timeout_s: float = 60.0,
    quiet_s: float = 2.0,
) -> list[DeadLetter]:
    """Every record of ``topics`` up to the end of each partition as first seen (only
    those ``keep`` accepts, if given: the others are not held in memory).

    Reads with a group-less consumer (no offsets committed, nothing changes on the
    broker). The end of a partition is its high watermark as the consumer first sees it
    on a fetch (on Tansu ``end_offsets()`` is wrong, see README); records appended later
    are not read. ``quiet_s`` of empty fetches after every end is known also ends the
    read (a log whose last offsets are not records, e.g. transaction markers).
    ``timeout_s`` without progress is a :class:`~bus.errors.TransportError`.
    """
    if not topics:
        return []
    consumer = transport.consumer(list(topics), group=None)
    await consumer.start()
    out: list[DeadLetter] = []
    try:
        tps = consumer.assignment()
        ends: dict[TopicPartition, int] = {}
        next_offset: dict[TopicPartition, int] = {}
        deadline = time.monotonic() + timeout_s
        quiet_since = time.monotonic()

        def note_ends() -> None:
            for tp in tps:
                if tp not in ends:
                    hw = consumer.highwater(tp)
                    if hw is not None:
                        ends[tp] = hw

        def finished() -> bool:
            return len(ends) == len(tps) and all(
                next_offset.get(tp, -1) >= end or end == 0 for tp, end in ends.items()
            )

        note_ends()
        while not finished():
            if time.monotonic() > deadline:
                missing = sorted(tp for tp in tps if tp not in ends)
                raise TransportError(
                    f"could not read {', '.join(topics)} to its end: no progress for "
                    f"{timeout_s:.0f}s (--read-timeout-s) "
                    f"(partitions without a known end: {missing or 'none'}); is the broker up?"
                )
            batches = await consumer.fetch(max_records=1000, timeout_s=0.2)
            note_ends()
            if not batches:
                if len(ends) == len(tps) and time.monotonic() - quiet_since > quiet_s:
                    break
                continue
            quiet_since = time.monotonic()
            deadline = quiet_since + timeout_s  # a deadline for progress, not for the read
            for tp, records in batches.items():
                end = ends.get(tp)
                for record in records:
                    if end is not None and record.offset >= end:
                        break
                    d = DeadLetter.from_record(record)
                    if keep is None or keep(d):
                        out.append(d)
                if records:
                    next_offset[tp] = records[-1].offset + 1
    finally:
        await consumer.stop()
    return out


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
