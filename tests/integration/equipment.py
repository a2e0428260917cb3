"""The equipment a hire gets, shipped by a child saga of the hiring saga: the parent and
child shared by the sub-saga tests through the coordinator (test_sub_sagas.py,
test_child_undo.py), on :mod:`tests.integration.hiring`'s hire and account.

Example::

    PARENT = hiring_parent(Step("welcome", command=Welcome, success=Welcomed))
    async with SagaTestKit(PARENT, EQUIPMENT, store=open_store(), start=T0) as kit: ...
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from bus import Command, Event
from sagas import Compensation, SagaDefinition, Stage, Step, SubSaga
from tests.integration.hiring import REG, hiring_flow, open_account


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


def hiring_parent(*after: Stage, **options: Any) -> SagaDefinition:
    """The ``hiring`` saga: open the account, then the ``equipment`` child, then ``after``."""
    return hiring_flow(
        "hiring",
        Person,
        lambda e: Person(who=e.who),
        [open_account(), SubSaga("equipment", definition="equipment", data=kit_for), *after],
        **options,
    )
