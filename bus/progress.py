"""How far a consumer group has handled its input: a fence, and who is still behind it.

A :class:`Fence` is where every partition of an app's topics ended at one moment, asked of
the broker (not the consumer's last view, which a stalled process holds stale). A
partition has *reached* the fence once every record before its end there has an outcome:
on a partition the worker owns, by the worker's own progress (a record handled is in the
handler's hands, e.g. a saga store's transaction, committed or not); on any other, by the
group's committed offset (another member's handled work, or this worker's before it lost
the partition). Records the broker no longer keeps (retention) are nobody's to wait for.

The saga coordinator fences its reply timeouts with it (``sagas/timers.py``): a timeout
fires only once the replies that were on the topics when it was due have been applied.

Example::

    fence = await worker.fence()
    while await worker.behind(fence):      # {partition: (handled to, fence)} still behind
        await asyncio.sleep(0.1)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bus.record import TopicPartition
from bus.transports.base import Consumer, Transport

__all__ = ["Fence", "behind", "take_fence"]


@dataclass(frozen=True, slots=True)
class Fence:
    """Every partition of some topics, where it stood when the fence was taken."""

    #: Partition -> its end offset then (the offset the next record would get).
    ends: Mapping[TopicPartition, int]
    #: Partition -> the offset of its oldest record kept then (older ones are gone).
    starts: Mapping[TopicPartition, int]


async def take_fence(transport: Transport, consumer: Consumer, topics: Sequence[str]) -> Fence:
    """The end and start offsets of every partition of ``topics`` now (two round trips)."""
    tps = [
        TopicPartition(topic, p)
        for topic in topics
        for p in range(await transport.partitions_for(topic))
    ]
    return Fence(await consumer.end_offsets(tps), await consumer.beginning_offsets(tps))


async def behind(
    fence: Fence, consumer: Consumer, handled: Mapping[TopicPartition, int | None]
) -> dict[TopicPartition, tuple[int, int]]:
    """The partitions not yet handled up to ``fence``: partition -> (handled to, fence end).

    ``handled``: the partitions this member owns -> the offset before which every record
    has its outcome (None: unknown yet); others are read from the group's committed offsets.
    """
    out: dict[TopicPartition, tuple[int, int]] = {}
    for tp, end in fence.ends.items():
        floor = fence.starts.get(tp, 0)
        if end <= floor:
            continue  # nothing kept below the fence: nothing to wait for
        done = handled.get(tp)
        if done is None:
            done = await consumer.committed(tp)
        progress = max(done or 0, floor)
        if progress < end:
            out[tp] = (progress, end)
    return out
