"""Which offset may be committed: the contiguous prefix of fully acknowledged records.

A record is *settled* when its handler finished and every record it emitted (or its
dead letter) was acknowledged by the transport. The committable offset of a partition
is one past the last record of the unbroken run of settled records from the start, so
a crash never skips a record whose output was not durable. Pure: acks are any objects
with ``done()`` and ``exception()`` (asyncio futures in practice).

Example::

    tracker = OffsetTracker()
    tracker.add(TopicPartition("t", 0), 7, [ack])
    tracker.committable()   # {TopicPartition("t", 0): 8} once ack is done
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Protocol

from bus.record import OutgoingRecord, TopicPartition

__all__ = ["Ack", "OffsetTracker", "Pending", "Unacked"]


class Ack(Protocol):
    def done(self) -> bool: ...

    def exception(self) -> BaseException | None: ...


#: A handled record whose outputs may still be in flight: ``(offset, outputs, acks)``, the
#: records it emitted in send order and their acknowledgements by the same index (a
#: re-sent output's ack is swapped in place). A plain tuple: one is made per handled
#: record, and a dataclass's ``__init__`` (a Python frame) or even a NamedTuple's
#: ``tuple.__new__`` cost about 2.5k instructions more per record (bench/hot_path.py).
Pending = tuple[int, list[OutgoingRecord], list[Ack]]

_NONE: deque[Pending] = deque()


@dataclass(frozen=True, slots=True)
class Unacked:
    """An output whose send failed: it must be sent again before its record can settle."""

    tp: TopicPartition
    offset: int
    index: int
    record: OutgoingRecord
    error: BaseException


class OffsetTracker:
    """Per partition, the handled records in offset order and their acknowledgements."""

    def __init__(self) -> None:
        self._pending: dict[TopicPartition, deque[Pending]] = {}
        self._settled: dict[TopicPartition, int] = {}

    def add(
        self,
        tp: TopicPartition,
        offset: int,
        acks: Sequence[Ack] = (),
        outputs: Sequence[OutgoingRecord] = (),
    ) -> None:
        """Record that ``offset`` was handled; ``acks`` pair with ``outputs`` by index."""
        queue = self._pending.get(tp)
        # a pending first ack (Kafka's usual case) answers without a call to _all_acked
        if not queue and (not acks or acks[0].done()) and _all_acked(acks):
            # nothing before it in flight and its outputs already acknowledged (always so on
            # the memory transport): settled at once, and nothing is kept alive for later
            self._settled[tp] = offset + 1
            return
        if queue is None:
            queue = self._pending[tp] = deque()
        # the worker's fresh lists are kept as they are (no copies on the hot path)
        queue.append(
            (
                offset,
                outputs if type(outputs) is list else list(outputs),
                acks if type(acks) is list else list(acks),
            )
        )

    def advance(self, tp: TopicPartition | None = None) -> list[Unacked]:
        """Advance over the acknowledged prefix (of ``tp``, or of all); return failed sends.

        Settling often releases handled records (and their outputs) early; a failure stays
        at the head of its partition until :meth:`replace_ack` swaps in a new ack. Once the
        head failed, the failures behind it are reported too: a broker outage fails a whole
        run of sends, and they are sent again in one round rather than one per settle.
        """
        failed: list[Unacked] = []
        queues = self._pending.items() if tp is None else [(tp, self._pending.get(tp, _NONE))]
        settled = self._settled
        for part, queue in queues:
            while queue:
                head = queue[0]
                offset, _, acks = head
                waiting = failing = False
                for ack in acks:  # a plain loop: this runs once per handled record
                    if not ack.done():
                        waiting = True
                        continue
                    try:  # _error inline: a call per ack cost more than the check
                        error = ack.exception()
                    except BaseException as cancelled:  # a cancelled future raises
                        error = cancelled
                    if error is not None:
                        failing = True
                if failing:
                    failed.extend(_failures(part, head))
                    for later in islice(queue, 1, None):
                        failed.extend(_failures(part, later))
                    break
                if waiting:
                    break
                queue.popleft()
                settled[part] = offset + 1
        return failed

    def replace_ack(self, tp: TopicPartition, offset: int, index: int, ack: Ack) -> None:
        """Swap in the ack of a re-sent output."""
        for pending_offset, _, acks in self._pending.get(tp, ()):
            if pending_offset == offset:
                acks[index] = ack
                return

    def committable(self) -> dict[TopicPartition, int]:
        """Committable offsets (next to read) per partition, after :meth:`advance`."""
        return dict(self._settled)

    def in_flight(self, tp: TopicPartition | None = None) -> int:
        """Handled records not settled yet (in ``tp``, or in all partitions)."""
        if tp is not None:
            return len(self._pending.get(tp, ()))
        return sum(len(q) for q in self._pending.values())

    def forget(self, tp: TopicPartition) -> None:
        """Drop ``tp`` (revoked): its unsettled records will be redelivered elsewhere."""
        self._pending.pop(tp, None)
        self._settled.pop(tp, None)

    def committed(self, offsets: dict[TopicPartition, int]) -> None:
        """Forget settled offsets that were committed (so they are not committed again)."""
        for tp, offset in offsets.items():
            if self._settled.get(tp) == offset:
                del self._settled[tp]


def _all_acked(acks: Sequence[Ack]) -> bool:
    for ack in acks:  # noqa: SIM110 - all() of a generator costs more per call (hot path)
        if not ack.done() or _error(ack) is not None:
            return False
    return True


def _failures(tp: TopicPartition, pending: Pending) -> list[Unacked]:
    offset, outputs, acks = pending
    out = []
    for i, ack in enumerate(acks):
        if ack.done():
            error = _error(ack)
            if error is not None:
                out.append(Unacked(tp, offset, i, outputs[i], error))
    return out


def _error(ack: Ack) -> BaseException | None:
    """A done ack's error; a cancelled one (its producer stopped) counts as failed."""
    try:
        return ack.exception()
    except BaseException as cancelled:  # asyncio raises CancelledError for a cancelled future
        return cancelled
