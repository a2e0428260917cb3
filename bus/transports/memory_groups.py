"""Consumer groups of the in-process log: members, range assignment, owners, committed offsets.

A rebalance is *eager with a barrier*, as Kafka's: :meth:`ConsumerGroups.settle` gives a
member what to revoke first and what it may take once the previous owner released it, so
records are never handled by two members at once. :class:`~bus.transports.memory_broker.MemoryBroker`
owns one :class:`ConsumerGroups`; nothing here is thread-safe.

Example::

    groups = ConsumerGroups(partition_count=lambda topic: 3, notify=lambda: None)
    groups.join("billing", consumer)
    revoke, takeable = groups.settle("billing", consumer.member_id, frozenset())
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bus.errors import CommitFailedError
from bus.record import TopicPartition

if TYPE_CHECKING:
    from bus.transports.memory_consumer import MemoryConsumer

__all__ = ["ConsumerGroups"]


@dataclass
class _Group:
    members: dict[int, MemoryConsumer] = field(default_factory=dict)
    #: Who should own each partition once the rebalance settles.
    target: dict[TopicPartition, int] = field(default_factory=dict)
    #: Who owns each partition now (absent: released, free to take).
    owner: dict[TopicPartition, int] = field(default_factory=dict)
    committed: dict[TopicPartition, int] = field(default_factory=dict)


class ConsumerGroups:
    """Every consumer group of one broker.

    ``partition_count`` gives a topic's partition count (None: no such topic yet);
    ``notify`` wakes waiting fetches after a change.
    """

    def __init__(
        self, partition_count: Callable[[str], int | None], notify: Callable[[], None]
    ) -> None:
        self._groups: dict[str, _Group] = {}
        self._partition_count = partition_count
        self._notify = notify

    def committed_offsets(self, group: str) -> dict[TopicPartition, int]:
        """The committed offsets of ``group`` (the live mapping: copy before keeping it)."""
        return self._group(group).committed

    def _group(self, name: str) -> _Group:
        return self._groups.setdefault(name, _Group())

    def join(self, group: str, member: MemoryConsumer) -> None:
        self._group(group).members[member.member_id] = member
        self._reassign(group)

    def leave(self, group: str, member: MemoryConsumer) -> None:
        g = self._group(group)
        g.members.pop(member.member_id, None)
        for tp in [tp for tp, owner in g.owner.items() if owner == member.member_id]:
            del g.owner[tp]
        self._reassign(group)

    def rebalance_subscribers(self, topic: str) -> None:
        for name, g in self._groups.items():
            if any(topic in m.topics for m in g.members.values()):
                self._reassign(name)

    def _reassign(self, group: str) -> None:
        """Range-assign every subscribed partition among members (as Kafka's RangeAssignor)."""
        g = self._group(group)
        target: dict[TopicPartition, int] = {}
        topics = sorted({t for m in g.members.values() for t in m.topics})
        for topic in topics:
            count = self._partition_count(topic)
            if count is None:
                continue
            subscribers = sorted(mid for mid, m in g.members.items() if topic in m.topics)
            per, extra = divmod(count, len(subscribers))
            start = 0
            for i, mid in enumerate(subscribers):
                n = per + (1 if i < extra else 0)
                for p in range(start, start + n):
                    target[TopicPartition(topic, p)] = mid
                start += n
        g.target = target
        self._notify()

    def settle(
        self, group: str, member_id: int, owned: frozenset[TopicPartition]
    ) -> tuple[frozenset[TopicPartition], frozenset[TopicPartition]]:
        """(to revoke, free to take) for a member that owns ``owned`` now."""
        g = self._group(group)
        mine = {tp for tp, mid in g.target.items() if mid == member_id}
        revoke = frozenset(owned - mine)
        takeable = frozenset(tp for tp in mine - owned if tp not in g.owner)
        return revoke, takeable

    def release(self, group: str, member_id: int, tps: frozenset[TopicPartition]) -> None:
        g = self._group(group)
        for tp in tps:
            if g.owner.get(tp) == member_id:
                del g.owner[tp]
        self._notify()

    def take(self, group: str, member_id: int, tps: frozenset[TopicPartition]) -> None:
        g = self._group(group)
        for tp in tps:
            g.owner[tp] = member_id

    def commit(self, group: str, member_id: int, offsets: Mapping[TopicPartition, int]) -> None:
        g = self._group(group)
        foreign = sorted(tp for tp in offsets if g.owner.get(tp) != member_id)
        if foreign:
            raise CommitFailedError(
                f"cannot commit {foreign} for group {group!r}: the partitions were revoked "
                "from this member (a rebalance moved them); their records will be redelivered"
            )
        g.committed.update(offsets)

    def committed(self, group: str, tp: TopicPartition) -> int | None:
        return self._group(group).committed.get(tp)
