"""A hire and the account it opens: the set-up shared by the saga tests whose flows wait on
a time computed from the start date (test_deadline.py: a deadline; test_time_from_data.py:
delays and held steps), and the account step and the drive of a parent and its child saga
shared by the child-saga tests (test_sub_sagas.py, child_undo_sagas.py and
test_child_undo*.py). Each test module adds its own messages and stages.

Example::

    FLOW = hiring_flow("late", 2, [open_account(timeout=timedelta(days=30))])
    t = start(FLOW, hired(date(2026, 3, 3)), message_id="h", now=T0)
    t = reply(FLOW, t, Opened(), "r1")
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from pydantic import BaseModel

from bus import Command, Event, Registry
from sagas import Compensation, Incoming, SagaDefinition, Stage, Step, Transition, decide, start
from sagas.children import StartChildSaga
from sagas.core import start_child

REG = Registry()
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


class Hired(Event, type="test.hiring.hired.v1", topic="t", key="who", registry=REG):
    who: str
    start_date: date


class Open(Command, type="test.hiring.open.v1", topic="t", registry=REG):
    who: str


class Opened(Event, type="test.hiring.opened.v1", topic="t", registry=REG):
    pass


class Close(Command, type="test.hiring.close.v1", topic="t", registry=REG):
    who: str


class Closed(Event, type="test.hiring.closed.v1", topic="t", registry=REG):
    pass


class Person(BaseModel):
    """The data of a saga that needs only who was hired."""

    who: str


class Hire(BaseModel):
    who: str
    start_date: date


def hired(start_date: date, who: str = "ada") -> Hired:
    return Hired(who=who, start_date=start_date)


def open_account(**options: Any) -> Step:
    """The ``open`` step, compensated by ``Close``."""
    return Step(
        "open",
        command=Open,
        success=Opened,
        compensation=Compensation(Close, success=Closed),
        **options,
    )


def hiring_flow(name: str, version: int, stages: Sequence[Stage], **options: Any) -> SagaDefinition:
    """A saga started by :class:`Hired`, one per ``who``, its data a :class:`Hire`."""
    return SagaDefinition(
        name=name,
        version=version,
        trigger=Hired,
        correlation_key="who",
        data=Hire,
        start=lambda e: Hire(who=e.who, start_date=e.start_date),
        stages=list(stages),
        **options,
    )


def person_flow(
    name: str, trigger: type[Event], stages: Sequence[Stage], **options: Any
) -> SagaDefinition:
    """A saga started by ``trigger`` (an event with a ``who``), one per ``who``, its data a
    :class:`Person` (the parents and children of the child-saga tests)."""
    return SagaDefinition(
        name=name,
        version=1,
        trigger=trigger,
        correlation_key="who",
        data=Person,
        start=lambda e: Person(who=e.who),
        stages=list(stages),
        **options,
    )


def reply(definition: SagaDefinition, t: Transition, message: Event, mid: str) -> Transition:
    """``message`` (id ``mid``) replied to the saga of ``t`` at :data:`T0`."""
    return decide(
        definition, t.state, Incoming(message.bus_type, mid, t.state.saga_id, message), T0
    )


def started_child(
    parent: SagaDefinition, child: SagaDefinition, trigger: Event, opened_id: str
) -> tuple[Transition, Transition]:
    """``parent`` started by ``trigger``, its ``open`` step replied to (``opened_id``), and
    ``child`` started by the one command that sends: the two transitions."""
    t = start(parent, trigger, message_id="h", now=T0)
    t = reply(parent, t, Opened(), opened_id)
    [begin] = t.commands
    assert isinstance(begin.message, StartChildSaga)
    return t, start_child(child, begin.message, message_id=begin.id, now=T0)
