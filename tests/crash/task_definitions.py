"""A saga that waits on a person, for the task crash test: each hire's manager assigns a
desk (a :class:`~sagas.task_stage.Task`, due in 2 s so some go overdue across the kills).

``bus sagas run -d tests.crash.task_definitions`` runs it.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel

from bus import Event
from handlers.hr.contracts import EmployeeHired
from sagas.definition import SagaDefinition, Task

__all__ = ["DUE", "DeskAssigned", "Hire", "desk"]

DUE = timedelta(seconds=2)


class DeskAssigned(Event, type="test.crash.desk_assigned.v1", topic="test.crash.forms"):
    """The form a manager submits."""

    desk: str


class Hire(BaseModel):
    employee_id: str
    manager_email: str
    desk: str | None = None


def manager_of(data: Hire) -> str:
    return data.manager_email


def remember_desk(data: Hire, form: DeskAssigned) -> Hire:
    return data.model_copy(update={"desk": form.desk})


desk = SagaDefinition(
    name="desk",
    version=1,
    trigger=EmployeeHired,
    correlation_key="employee_id",
    data=Hire,
    start=lambda e: Hire(employee_id=e.employee_id, manager_email=e.manager_email),
    stages=[
        Task("assign_desk", assignee=manager_of, form=DeskAssigned, deadline=DUE,
             update=remember_desk),
    ],
)  # fmt: skip
