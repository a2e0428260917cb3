"""Child sagas through the coordinator on SQLite and PostgreSQL, across restarts: the
parent's start command, the child's run, its end report, a cancel from a compensating
parent - each through the outbox and the bus, as between replicas."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import BaseModel

from bus import Command, Event, Registry
from sagas import Compensation, SagaDefinition, SagaStatus, Step, SubSaga
from sagas.stores import SagaStore, store_from_url
from sagas.testing import SagaTestKit

REG = Registry()
T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


class Hired(Event, type="test.child.hired.v1", topic="child.events", key="who", registry=REG):
    who: str


class Withdrawn(
    Event, type="test.child.withdrawn.v1", topic="child.events", key="who", registry=REG
):
    who: str


class Open(Command, type="test.child.open.v1", topic="child.commands", key="who", registry=REG):
    who: str


class Opened(Event, type="test.child.opened.v1", topic="child.events", registry=REG):
    pass


class Close(Command, type="test.child.close.v1", topic="child.commands", key="who", registry=REG):
    who: str


class Closed(Event, type="test.child.closed.v1", topic="child.events", registry=REG):
    pass


class Ship(Command, type="test.child.ship.v1", topic="child.commands", key="who", registry=REG):
    who: str
    laptop: str


class Shipped(Event, type="test.child.shipped.v1", topic="child.events", registry=REG):
    pass


class Unship(Command, type="test.child.unship.v1", topic="child.commands", registry=REG):
    who: str


class Unshipped(Event, type="test.child.unshipped.v1", topic="child.events", registry=REG):
    pass


class Person(BaseModel):
    who: str


class Kit(BaseModel):
    who: str
    laptop: str


class Ordered(Event, type="test.child.ordered.v1", topic="child.events", key="who", registry=REG):
    who: str


EQUIPMENT = SagaDefinition(
    name="equipment",
    version=1,
    trigger=Ordered,
    correlation_key="who",
    data=Kit,
    start=lambda e: Kit(who=e.who, laptop="any"),
    stages=[
        Step(
            "ship",
            command=Ship,
            success=Shipped,
            compensation=Compensation(Unship, success=Unshipped),
        )
    ],
)


def kit_for(data: Person) -> Kit:
    return Kit(who=data.who, laptop="14-inch")


PARENT = SagaDefinition(
    name="hiring",
    version=1,
    trigger=Hired,
    correlation_key="who",
    data=Person,
    start=lambda e: Person(who=e.who),
    stages=[
        Step(
            "open", command=Open, success=Opened, compensation=Compensation(Close, success=Closed)
        ),
        SubSaga("equipment", definition="equipment", data=kit_for),
    ],
    cancel_on=[Withdrawn],
)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], SagaStore]:
    url = (
        f"sqlite:{tmp_path / 'sagas.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_dsn")
    )
    return lambda: store_from_url(url)


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
