"""A hire and the account it opens: the set-up shared by the saga tests whose flows wait on
a time computed from the start date (test_deadline.py: a deadline; test_time_from_data.py:
delays and held steps). Each test module adds its own messages and stages.

Example::

    FLOW = hiring_flow("late", 2, [open_account(timeout=timedelta(days=30))])
    t = start(FLOW, hired(date(2026, 3, 3)), message_id="h", now=T0)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from pydantic import BaseModel

from bus import Command, Event, Registry
from sagas import Compensation, SagaDefinition, Stage, Step

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
