"""A completed child saga undone by its compensating parent, through the coordinator on SQLite
and PostgreSQL, across a restart: the request goes through the parent's outbox and the bus,
the child compensates and reports, and only then does the parent undo its own steps; the
request delivered again changes nothing."""

from __future__ import annotations

from collections.abc import Callable

from bus import Command, Event
from sagas import SagaStatus, Step, command_id
from sagas.children import CompensateChildSaga
from sagas.stores import SagaStore
from sagas.testing import SagaTestKit
from tests.integration.equipment import EQUIPMENT, Ship, Shipped, Unship, Unshipped, hiring_parent
from tests.integration.hiring import REG, T0, Close, Closed, Hired, Opened, open_store

__all__ = ["open_store"]  # the fixture, parametrized over SQLite and PostgreSQL


class Welcome(
    Command, type="test.undo.welcome.v1", topic="child.commands", key="who", registry=REG
):
    who: str


class Refused(Event, type="test.undo.refused.v1", topic="child.events", registry=REG):
    reason: str = ""


class Welcomed(Event, type="test.undo.welcomed.v1", topic="child.events", registry=REG):
    pass


PARENT = hiring_parent(Step("welcome", command=Welcome, success=Welcomed, failure=Refused))


async def test_a_parent_that_fails_after_its_child_completed_has_the_child_undo_itself_first(
    open_store: Callable[[], SagaStore],
) -> None:
    parent, child = "hiring:cy", "equipment:hiring:cy/equipment"
    async with SagaTestKit(PARENT, EQUIPMENT, store=open_store(), start=T0) as kit:
        await kit.publish(Hired(who="cy"))
        await kit.drain()
        await kit.reply(Opened(), saga_id=parent)
        await kit.drain()
        await kit.reply(Shipped(), saga_id=child)
        await kit.drain()
        assert await kit.status(child) == SagaStatus.COMPLETED
        await kit.reply(Refused(reason="no desk"), saga_id=parent)
        await kit.drain()
        assert kit.commands()[-1] == Unship(who="cy")  # the child undoes itself first
        assert await kit.status(parent) == SagaStatus.COMPENSATING
    async with SagaTestKit(PARENT, EQUIPMENT, store=open_store(), start=T0) as kit:
        ask = CompensateChildSaga(
            child_id=child, parent_id=parent, step="equipment", reason="replayed"
        )
        again = command_id(parent, "equipment", "compensation", 1)
        await kit.publish(ask, id=again)  # the request delivered again: nothing twice
        await kit.drain()
        assert kit.commands() == []
        await kit.reply(Unshipped(), saga_id=child)
        await kit.drain()
        state = await kit.state(child)
        assert state.status == SagaStatus.COMPENSATED
        assert [h.event for h in state.history].count("reported") == 2
        assert kit.commands() == [Close(who="cy")]  # then the parent undoes its own
        await kit.reply(Closed(), saga_id=parent)
        await kit.drain()
        state = await kit.state(parent)
        assert state.status == SagaStatus.COMPENSATED
        assert state.steps["equipment"].status == "compensated"
        assert ("child_compensating", "equipment") in await kit.timeline(parent)
        assert kit.commands() == [Close(who="cy")]
        assert Ship(who="cy", laptop="14-inch") not in kit.commands()
