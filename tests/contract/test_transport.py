"""The Transport contract: every implementation must pass all of it.

A backend joins by adding a factory to ``CLUSTERS`` in ``tests/conftest.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import pytest

from bus import (
    CommitFailedError,
    Consumer,
    MessageTooLargeError,
    OutgoingRecord,
    Record,
    TopicPartition,
    TopicSpec,
    Transport,
    partition_for_key,
)
from tests.conftest import Cluster, unique
from tests.waiting import wait_until


class Listener:
    """Records rebalance callbacks in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, frozenset[TopicPartition]]] = []

    async def on_partitions_revoked(self, revoked: frozenset[TopicPartition]) -> None:
        self.events.append(("revoked", revoked))

    async def on_partitions_assigned(self, assigned: frozenset[TopicPartition]) -> None:
        self.events.append(("assigned", assigned))


async def make_topic(transport: Transport, partitions: int) -> str:
    topic = unique("contract")
    await transport.ensure_topics([TopicSpec(topic, partitions=partitions)])
    return topic


async def read_all(consumer: Consumer, expected: int, timeout_s: float = 20.0) -> list[Record]:
    """Fetch until ``expected`` records arrived (fails on timeout)."""
    got: list[Record] = []

    async def fetched() -> int:
        for records in (await consumer.fetch(max_records=500, timeout_s=0.2)).values():
            got.extend(records)
        return len(got)

    if expected:
        await wait_until(
            fetched,
            until=lambda n: n >= expected,
            timeout_s=timeout_s,
            what=f"{expected} records",
            interval_s=0,
        )
    return got


async def wait_assigned(
    consumers: Sequence[Consumer], total: int, timeout_s: float = 30.0
) -> list[Record]:
    """Fetch on every consumer until each owns some partitions, disjoint, covering ``total``.

    Returns the records those fetches read, so callers can count them.
    """
    fetched: list[Record] = []

    def settled(sets: list[frozenset[TopicPartition]]) -> bool:
        union = frozenset().union(*sets)
        return len(union) == total and sum(len(s) for s in sets) == total and all(sets)

    async def assignments_after_a_fetch() -> list[frozenset[TopicPartition]]:
        sets = [c.assignment() for c in consumers]
        if not settled(sets):  # fetching drives the group protocol
            results = await asyncio.gather(
                *(c.fetch(max_records=1, timeout_s=0.05) for c in consumers)
            )
            fetched.extend(r for batch in results for records in batch.values() for r in records)
        return sets

    await wait_until(
        assignments_after_a_fetch,
        until=settled,
        timeout_s=timeout_s,
        what="assignments to settle",
        interval_s=0,
    )
    return fetched


async def publish_keyed(transport: Transport, topic: str, count: int, keys: int) -> None:
    acks = [
        await transport.send(
            OutgoingRecord(topic, key=f"k{i % keys}".encode(), value=str(i).encode())
        )
        for i in range(count)
    ]
    await asyncio.gather(*acks)


async def test_keyed_record_lands_where_kafkas_default_partitioner_puts_it(
    cluster: Cluster,
) -> None:
    t = await cluster.client()
    topic = await make_topic(t, 6)
    for key in (b"foobar", b"e-1001", b"", b"\xff\x00"):
        meta = await t.publish(OutgoingRecord(topic, key=key, value=b"v"))
        assert meta.partition == partition_for_key(key, 6)


async def test_records_of_one_key_are_read_in_the_order_written(cluster: Cluster) -> None:
    t = await cluster.client()
    topic = await make_topic(t, 4)
    await publish_keyed(t, topic, 200, keys=7)
    consumer = t.consumer([topic], group=unique("g"))
    await consumer.start()
    records = await read_all(consumer, 200)
    by_key: dict[bytes | None, list[int]] = {}
    for r in records:
        by_key.setdefault(r.key, []).append(int(r.value or b"0"))
    for values in by_key.values():
        assert values == sorted(values)
    assert sorted(v for vs in by_key.values() for v in vs) == list(range(200))
    await consumer.stop()


async def test_publish_many_acknowledges_every_record_in_order(cluster: Cluster) -> None:
    t = await cluster.client()
    topic = await make_topic(t, 1)
    records = [OutgoingRecord(topic, key=b"k", value=str(i).encode()) for i in range(50)]
    metas = await t.publish_many(records)
    assert [(m.topic, m.partition) for m in metas] == [(topic, 0)] * 50
    assert [m.offset for m in metas] == list(range(50))
    assert await t.publish_many([]) == []
    consumer = t.consumer([topic], group=None)
    await consumer.start()
    assert [r.value for r in await read_all(consumer, 50)] == [r.value for r in records]
    await consumer.stop()


async def test_headers_key_and_value_round_trip_unchanged(cluster: Cluster) -> None:
    t = await cluster.client()
    topic = await make_topic(t, 1)
    headers = [("ce_id", b"1"), ("x-bin", bytes(range(256))), ("ce_id", b"dup"), ("empty", b"")]
    await t.publish(OutgoingRecord(topic, key=b"\x00key", value=b"\x01\x02", headers=headers))
    consumer = t.consumer([topic], group=None)
    await consumer.start()
    [record] = await read_all(consumer, 1)
    assert (record.key, record.value, list(record.headers)) == (b"\x00key", b"\x01\x02", headers)
    assert record.offset == 0
    await consumer.stop()


async def test_two_members_of_a_group_split_the_partitions(cluster: Cluster) -> None:
    a, b = await cluster.client(), await cluster.client()
    topic = await make_topic(a, 6)
    group = unique("g")
    ca, cb = a.consumer([topic], group=group), b.consumer([topic], group=group)
    await ca.start()
    await cb.start()
    await wait_assigned([ca, cb], 6)
    assert ca.assignment()
    assert cb.assignment()
    await publish_keyed(a, topic, 300, keys=50)
    got: list[Record] = []

    async def fetched_by_both() -> int:
        for consumer in (ca, cb):
            for tp, records in (await consumer.fetch(max_records=100, timeout_s=0.05)).items():
                assert tp in consumer.assignment()
                got.extend(records)
        return len(got)

    await wait_until(
        fetched_by_both, until=lambda n: n >= 300, timeout_s=20, what="300 records", interval_s=0
    )
    assert sorted(int(r.value or b"0") for r in got) == list(range(300))
    await ca.stop()
    await cb.stop()


async def test_committed_offsets_survive_a_consumer_restart(cluster: Cluster) -> None:
    t = await cluster.client()
    topic = await make_topic(t, 2)
    group = unique("g")
    await publish_keyed(t, topic, 40, keys=4)
    first = t.consumer([topic], group=group)
    await first.start()
    records = await read_all(first, 40)
    half: dict[TopicPartition, int] = {}
    for r in records:
        if int(r.value or b"0") < 20:
            half[r.topic_partition] = max(half.get(r.topic_partition, 0), r.offset + 1)
    await first.commit(half)
    for tp, offset in half.items():
        assert await first.committed(tp) == offset
    await first.stop()

    second = (await cluster.client()).consumer([topic], group=group)
    await second.start()
    again = await read_all(second, 40 - sum(half.values()))
    assert sorted(int(r.value or b"0") for r in again) == list(range(20, 40))
    await second.stop()


async def test_a_new_group_starts_at_earliest_or_latest_as_asked(cluster: Cluster) -> None:
    t = await cluster.client()
    topic = await make_topic(t, 1)
    await publish_keyed(t, topic, 5, keys=1)
    earliest = t.consumer([topic], group=unique("g"), offset_reset="earliest")
    latest = t.consumer([topic], group=unique("g"), offset_reset="latest")
    await earliest.start()
    await latest.start()
    assert len(await read_all(earliest, 5)) == 5
    await latest.fetch(max_records=10, timeout_s=0.5)  # positions itself at the end
    await t.publish(OutgoingRecord(topic, key=b"k0", value=b"new"))
    [record] = await read_all(latest, 1)
    assert record.value == b"new"
    await earliest.stop()
    await latest.stop()


async def test_a_joining_member_gets_partitions_only_after_they_were_revoked(
    cluster: Cluster,
) -> None:
    a, b = await cluster.client(), await cluster.client()
    topic = await make_topic(a, 4)
    group = unique("g")
    la, lb = Listener(), Listener()
    ca = a.consumer([topic], group=group, listener=la)
    await ca.start()
    await wait_assigned([ca], 4)
    cb = b.consumer([topic], group=group, listener=lb)
    await cb.start()
    await wait_assigned([ca, cb], 4)
    moved = frozenset(cb.assignment())
    revoked = frozenset().union(*(tps for kind, tps in la.events if kind == "revoked"))
    assert moved <= revoked, "every partition b got was revoked from a first"
    assert ("assigned", moved) in lb.events or any(k == "assigned" for k, _ in lb.events)
    await ca.stop()
    await cb.stop()


async def test_partitions_of_a_stopped_member_move_to_the_others_without_loss(
    cluster: Cluster,
) -> None:
    a, b = await cluster.client(), await cluster.client()
    topic = await make_topic(a, 4)
    group = unique("g")
    ca, cb = a.consumer([topic], group=group), b.consumer([topic], group=group)
    await ca.start()
    await cb.start()
    await wait_assigned([ca, cb], 4)
    await publish_keyed(a, topic, 100, keys=20)
    # a reads and commits what it owns, then leaves; b must read everything else.
    owned_by_a = ca.assignment()
    got_a: list[Record] = []
    while True:
        batches = await ca.fetch(max_records=500, timeout_s=0.3)
        if not batches:
            break
        for records in batches.values():
            got_a.extend(records)
    expected_a = len(got_a)
    ends: dict[TopicPartition, int] = {}
    for r in got_a:
        ends[r.topic_partition] = max(ends.get(r.topic_partition, 0), r.offset + 1)
    assert set(ends) <= owned_by_a
    await ca.commit(ends)
    await ca.stop()
    got_b = await wait_assigned([cb], 4)
    # b committed nothing, so a rebalance may hand it its own records again (Kafka's eager
    # protocol resets positions to the committed offsets): count distinct records.
    values_b = {int(r.value or b"0") for r in got_b}

    async def distinct_values_of_b() -> int:
        if len(values_b) < 100 - expected_a:
            for records in (await cb.fetch(max_records=500, timeout_s=0.2)).values():
                values_b.update(int(r.value or b"0") for r in records)
        return len(values_b)

    await wait_until(
        distinct_values_of_b,
        until=lambda n: n >= 100 - expected_a,
        timeout_s=20,
        what=f"{100 - expected_a} distinct records on b",
        interval_s=0,
    )
    values_a = [int(r.value or b"0") for r in got_a]
    assert sorted(values_a + sorted(values_b)) == list(range(100))
    assert not values_b & set(values_a), "records a committed were redelivered"
    await cb.stop()


async def test_committing_a_partition_the_member_no_longer_owns_fails(cluster: Cluster) -> None:
    a, b = await cluster.client(), await cluster.client()
    topic = await make_topic(a, 2)
    group = unique("g")
    ca = a.consumer([topic], group=group)
    await ca.start()
    await wait_assigned([ca], 2)
    before = ca.assignment()
    cb = b.consumer([topic], group=group)
    await cb.start()
    await wait_assigned([ca, cb], 2)
    lost = before - ca.assignment()
    assert lost
    with pytest.raises(CommitFailedError):
        await ca.commit(dict.fromkeys(lost, 0))
    await ca.stop()
    await cb.stop()


async def test_a_record_up_to_the_limit_is_accepted_and_above_it_refused(cluster: Cluster) -> None:
    t = await cluster.client()
    topic = await make_topic(t, 1)
    limit = cluster.max_record_bytes
    ok = OutgoingRecord(topic, key=None, value=b"x" * (limit // 2))
    assert (await t.publish(ok)).offset == 0
    with pytest.raises(MessageTooLargeError, match="limit"):
        await t.publish(OutgoingRecord(topic, key=None, value=b"x" * (limit + 1)))


async def test_list_topics_names_every_created_topic(cluster: Cluster) -> None:
    t = await cluster.client()
    a, b = await make_topic(t, 1), await make_topic(t, 2)
    listed = await t.list_topics()
    assert {a, b} <= set(listed)
    assert listed == sorted(listed)
    assert not [name for name in listed if name.startswith("__")]


async def test_a_fetching_consumer_learns_the_end_of_every_partition_even_empty_ones(
    cluster: Cluster,
) -> None:
    # the dead-letter tools read "up to the end as first seen"; they rely on this
    t = await cluster.client()
    topic = await make_topic(t, 3)
    for i in range(5):
        await t.publish(OutgoingRecord(topic, key=None, value=b"v", partition=i % 2))
    consumer = t.consumer([topic], group=None)
    await consumer.start()
    await read_all(consumer, 5)

    async def ends_after_a_fetch() -> dict[int, int | None]:
        ends = {p: consumer.highwater(TopicPartition(topic, p)) for p in range(3)}
        if None in ends.values():
            await consumer.fetch(max_records=10, timeout_s=0.2)
        return ends

    # a timeout is not a failure here: the equality below says what was missing
    with contextlib.suppress(AssertionError):
        await wait_until(
            ends_after_a_fetch,
            until=lambda ends: None not in ends.values(),
            timeout_s=10,
            what="every partition's end offset known",
            interval_s=0,
        )
    ends = {p: consumer.highwater(TopicPartition(topic, p)) for p in range(3)}
    assert ends == {0: 3, 1: 2, 2: 0}
    await consumer.stop()


async def test_end_and_beginning_offsets_are_asked_now_for_any_partition(
    cluster: Cluster,
) -> None:
    # the saga timers' fence (bus.progress) relies on this: fresh, not the last fetch's view
    t = await cluster.client()
    topic = await make_topic(t, 3)
    consumer = t.consumer([topic], group=unique("offsets"))
    await consumer.start()
    tps = [TopicPartition(topic, p) for p in range(3)]
    assert await consumer.end_offsets(tps) == dict.fromkeys(tps, 0)
    for i in range(5):
        await t.publish(OutgoingRecord(topic, key=None, value=b"v", partition=i % 2))
    # nothing fetched since: the answer comes from the broker, not the consumer's view
    assert await consumer.end_offsets(tps) == {tps[0]: 3, tps[1]: 2, tps[2]: 0}
    assert await consumer.beginning_offsets(tps) == dict.fromkeys(tps, 0)
    assert await consumer.end_offsets([]) == {}
    await consumer.stop()
