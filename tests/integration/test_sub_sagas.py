"""Child sagas through the coordinator on SQLite and PostgreSQL, across restarts: the
parent's start command, the child's run, its end report, a cancel from a compensating
parent - each through the outbox and the bus, as between replicas."""

from __future__ import annotations

from collections.abc import Callable

from bus import Event
from sagas import SagaStatus
from sagas.stores import SagaStore
from sagas.testing import SagaTestKit
from tests.integration.equipment import (
    EQUIPMENT,
    Ship,
    Shipped,
    Unship,
    Unshipped,
    hiring_parent,
)
from tests.integration.hiring import REG, T0, Close, Closed, Hired, Open, Opened, open_store

__all__ = ["open_store"]  # the fixture, parametrized over SQLite and PostgreSQL


class Withdrawn(
    Event, type="test.child.withdrawn.v1", topic="child.events", key="who", registry=REG
):
    who: str


PARENT = hiring_parent(cancel_on=[Withdrawn])


async def test_a_child_saga_runs_to_its_end_and_completes_its_parent_across_a_restart(
    open_store: Callable[[], SagaStore],
) -> None:
    parent, child = "hiring:ada", "equipment:hiring:ada/equipment"
    async with SagaTestKit(PARENT, EQUIPMENT, store=open_store(), start=T0) as kit:
        await kit.publish(Hired(who="ada"))
        await kit.drain()
        await kit.reply(Opened(), saga_id=parent)
        await kit.drain()
        assert kit.commands() == [Open(who="ada"), Ship(who="ada", laptop="14-inch")]
        state = await kit.state(child)
        assert state.parent_id == parent
        [ship] = kit.sent(child)
        [start] = [s for s in kit.sent(parent) if s.message == Open(who="ada")]
        assert ship.envelope.traceparent is not None
        assert start.envelope.traceparent is not None
        # one trace: the child's command is in the parent's
        assert ship.envelope.traceparent.split("-")[1] == start.envelope.traceparent.split("-")[1]
    async with SagaTestKit(PARENT, EQUIPMENT, store=open_store(), start=T0) as kit:
        await kit.reply(Shipped(), saga_id=child)
        await kit.drain()
        assert await kit.status(child) == SagaStatus.COMPLETED
        assert await kit.status(parent) == SagaStatus.COMPLETED
        assert ("completed", "equipment") in await kit.timeline(parent)


async def test_a_cancelled_parent_cancels_its_running_child_then_undoes_itself(
    open_store: Callable[[], SagaStore],
) -> None:
    parent, child = "hiring:bo", "equipment:hiring:bo/equipment"
    async with SagaTestKit(PARENT, EQUIPMENT, store=open_store(), start=T0) as kit:
        await kit.publish(Hired(who="bo"))
        await kit.drain()
        await kit.reply(Opened(), saga_id=parent)
        await kit.drain()
        await kit.publish(Withdrawn(who="bo"))
        await kit.drain()
        assert await kit.status(child) == SagaStatus.COMPENSATING  # its shipment in flight
        assert await kit.status(parent) == SagaStatus.COMPENSATING  # awaiting the child
    async with SagaTestKit(PARENT, EQUIPMENT, store=open_store(), start=T0) as kit:
        await kit.reply(Shipped(), saga_id=child)
        await kit.drain()
        assert kit.commands() == [Unship(who="bo")]
        await kit.reply(Unshipped(), saga_id=child)
        await kit.drain()
        assert await kit.status(child) == SagaStatus.CANCELLED
        assert kit.commands() == [Unship(who="bo"), Close(who="bo")]
        await kit.reply(Closed(), saga_id=parent)
        await kit.drain()
        state = await kit.state(parent)
        assert state.status == SagaStatus.CANCELLED
        assert state.steps["equipment"].status == "compensated"
