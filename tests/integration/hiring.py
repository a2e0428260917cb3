"""A hire and the account it opens, run through the coordinator on SQLite and PostgreSQL
across restarts: the set-up shared by the saga tests of this folder that stop a test kit
part-way and finish on a new one over the same database (test_adaptive_sagas.py,
test_sub_sagas.py, test_child_undo.py). Each test module adds its own messages and stages.

Example::

    FLOW = hiring_flow("flow", Person, person, [open_account()])  # the test's own data

    async def test_x(open_store: Callable[[], SagaStore]) -> None:
        async with SagaTestKit(FLOW, store=open_store(), start=T0) as kit: ...
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from bus import Command, Event, Registry
from sagas import Compensation, SagaDefinition, Stage, Step
from sagas.stores import SagaStore, store_from_url

REG = Registry()
T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


class Hired(Event, type="test.hire.hired.v1", topic="hire.events", key="who", registry=REG):
    who: str
    country: str = "us"


class Open(Command, type="test.hire.open.v1", topic="hire.commands", key="who", registry=REG):
    who: str


class Opened(Event, type="test.hire.opened.v1", topic="hire.events", registry=REG):
    pass


class Close(Command, type="test.hire.close.v1", topic="hire.commands", key="who", registry=REG):
    who: str


class Closed(Event, type="test.hire.closed.v1", topic="hire.events", registry=REG):
    pass


def hiring_flow(
    name: str,
    data: type[BaseModel],
    start: Callable[[Hired], BaseModel],
    stages: Sequence[Stage],
    **options: Any,
) -> SagaDefinition:
    """A saga started by :class:`Hired`, one per ``who``, its data a ``data`` made by
    ``start``."""
    return SagaDefinition(
        name=name,
        version=1,
        trigger=Hired,
        correlation_key="who",
        data=data,
        start=start,
        stages=list(stages),
        **options,
    )


def open_account(**options: Any) -> Step:
    """The ``open`` step, compensated by ``Close``."""
    return Step(
        "open",
        command=Open,
        success=Opened,
        compensation=Compensation(Close, success=Closed),
        **options,
    )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], SagaStore]:
    """Opens a new store on one database each call (a restart keeps only the database)."""
    url = (
        f"sqlite:{tmp_path / 'sagas.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_dsn")
    )
    return lambda: store_from_url(url)
