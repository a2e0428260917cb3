"""The console's lag on a real broker: a group's committed offsets against the partitions'
ends, read without joining the group."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition as KafkaTopicPartition

from bus import OutgoingRecord, TopicSpec, group_lag
from bus.devbroker import DevBroker
from bus.transports.kafka import KafkaTransport, client_options
from tests.conftest import kafka_test_config, unique

pytestmark = pytest.mark.kafka


async def test_lag_is_the_end_offset_minus_the_groups_committed_offset(
    kafka_broker: DevBroker,
) -> None:
    transport = KafkaTransport(kafka_test_config(kafka_broker.bootstrap_servers))
    topic, group = unique("console-lag"), unique("console-lag-group")
    await transport.start()
    try:
        await transport.ensure_topics([TopicSpec(topic, partitions=2)])
        records = [OutgoingRecord(topic, None, b"{}", partition=i % 2) for i in range(5)]
        await transport.publish_many(records)
        before = await group_lag(transport, group, [topic])
        assert before is not None
        assert sorted((r.partition, r.end, r.committed) for r in before) == [
            (0, 3, None), (1, 2, None),
        ]  # fmt: skip
        # the group's commit, made as a manually assigned member (no group join needed)
        member = AIOKafkaConsumer(group_id=group, enable_auto_commit=False,
                                  **client_options(transport.config))  # fmt: skip
        await member.start()
        try:
            tps = [KafkaTopicPartition(topic, 0), KafkaTopicPartition(topic, 1)]
            member.assign(tps)
            await member.commit({tps[0]: 2, tps[1]: 2})
        finally:
            await member.stop()
        after = await group_lag(transport, group, [topic])
        assert after is not None
        assert sorted((r.partition, r.committed, r.lag) for r in after) == [(0, 2, 1), (1, 2, 0)]
    finally:
        await transport.stop()
