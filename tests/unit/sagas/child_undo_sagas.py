"""A parent saga whose child completes before a later step of the parent fails: the
definitions and messages the child-undo tests share (tests/unit/sagas/test_child_undo*.py),
on :mod:`tests.unit.sagas.hiring`'s account step."""

from __future__ import annotations

from bus import Command, Event, Registry
from sagas import Compensation, Step, SubSaga
from tests.unit.sagas.hiring import Close, Closed, Open, Opened, Person, open_account, person_flow

REG = Registry()


class Hired(Event, type="test.undo.hired.v1", topic="t", key="who", registry=REG):
    who: str


class Ship(Command, type="test.undo.ship.v1", topic="t", registry=REG):
    who: str


class Shipped(Event, type="test.undo.shipped.v1", topic="t", registry=REG):
    pass


class Lost(Event, type="test.undo.lost.v1", topic="t", registry=REG):
    reason: str = ""


class Crushed(Event, type="test.undo.crushed.v1", topic="t", registry=REG):
    reason: str = ""


class Recall(Command, type="test.undo.recall.v1", topic="t", registry=REG):
    who: str


class Recalled(Event, type="test.undo.recalled.v1", topic="t", registry=REG):
    pass


class Pack(Command, type="test.undo.pack.v1", topic="t", registry=REG):
    who: str


class Packed(Event, type="test.undo.packed.v1", topic="t", registry=REG):
    pass


class Unpack(Command, type="test.undo.unpack.v1", topic="t", registry=REG):
    who: str


class Unpacked(Event, type="test.undo.unpacked.v1", topic="t", registry=REG):
    pass


class Confirm(Command, type="test.undo.confirm.v1", topic="t", registry=REG):
    who: str


class Confirmed(Event, type="test.undo.confirmed.v1", topic="t", registry=REG):
    pass


class Refused(Event, type="test.undo.refused.v1", topic="t", registry=REG):
    reason: str = ""


KIT = person_flow(
    "kit",
    Hired,  # started as a child here
    [
        Step(
            "ship",
            command=Ship,
            success=Shipped,
            failure=Lost,
            compensation=Compensation(Recall, success=Recalled),
        ),
        Step(
            "pack",
            command=Pack,
            success=Packed,
            failure=Crushed,
            compensation=Compensation(Unpack, success=Unpacked),
        ),
    ],
)


def kit_for(data: Person) -> Person:
    return Person(who=data.who)


PARENT = person_flow(
    "welcome",
    Hired,
    [
        open_account(),
        SubSaga("kit", definition=KIT, data=kit_for),
        Step("confirm", command=Confirm, success=Confirmed, failure=Refused),
    ],
)

#: Command type -> (success reply, failure reply or None).
REPLIES: dict[type[Command], tuple[type[Event], type[Event] | None]] = {
    Open: (Opened, None),
    Close: (Closed, None),
    Ship: (Shipped, Lost),
    Recall: (Recalled, None),
    Pack: (Packed, Crushed),
    Unpack: (Unpacked, None),
    Confirm: (Confirmed, Refused),
}
