"""The outbox relay dead-letters a command the transport refuses for good, instead of
claiming it again forever and holding up every command behind it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bus import MemoryBroker, MemoryTransport, TopicSpec
from sagas import SagaState, SagaStatus
from sagas.outbox import OutboxRelay
from sagas.stores import MemorySagaStore, OutboxEntry, SagaWrite

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def entry(id_: str, value: bytes) -> OutboxEntry:
    headers = (("ce_id", id_.encode()), ("ce_type", b"demo.command.v1"))
    return OutboxEntry(id_, "demo:1", "demo.commands", b"demo:1", value, headers, T0)


def state() -> SagaState:
    return SagaState(
        saga_id="demo:1", name="demo", version=1, status=SagaStatus.RUNNING, data={},
        steps={}, trigger_id="t-1", started_at=T0, updated_at=T0,
    )  # fmt: skip


async def test_a_command_too_large_to_publish_is_dead_lettered_and_the_rest_go_out() -> None:
    broker = MemoryBroker(max_record_bytes=2_000)
    transport = MemoryTransport(broker)
    await transport.start()
    await transport.ensure_topics([TopicSpec("demo.commands", partitions=1)])
    store = MemorySagaStore()
    await store.open()
    rows = (entry("c-1", b"small"), entry("c-2", b"x" * 5_000), entry("c-3", b"small too"))
    await store.save(SagaWrite(state(), 0, outbox=rows))
    relay = OutboxRelay(store, transport, clock=lambda: T0 + timedelta(seconds=1))

    assert await relay.relay_all() == 3
    published = broker.records("demo.commands")
    assert [r.value for r in published] == [b"small", b"small too"]
    [letter] = broker.records("demo.commands.dlq")
    headers = dict(letter.headers)
    assert headers["bus_dlq_reason"] == b"undeliverable"
    assert headers["bus_dlq_topic"] == b"demo.commands"
    assert b"MessageTooLargeError" in headers["bus_dlq_error_type"]
    # too large to dead-letter whole: what was left out is said, the reasons are kept
    assert letter.value is None
    assert headers["bus_dlq_dropped"].startswith(b"value=5000")
    assert relay.dead_lettered == 1
    # nothing left to claim: the refused row does not come back
    assert await store.claim_outbox(now=T0 + timedelta(hours=1), limit=10, lease=timedelta(1)) == []
    await transport.stop()
