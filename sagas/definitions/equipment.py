"""Equipment, as child sagas of the onboarding (issue) and the offboarding (recovery).

Each is a task for a person: IT issues a new hire's equipment, the manager gets a leaver's
back. A parent starts one with ``SubSaga`` (its id ``<name>:<parent id>/<stage>``) and goes
on when it completes; either can also be started on its own by HR's request event.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict

from handlers.hr.contracts import EquipmentRecoveryRequested, EquipmentRequested
from handlers.notifications.contracts import NotifyManager
from sagas.definition import SagaDefinition, Task

__all__ = [
    "IT_DESK",
    "Equipment",
    "EquipmentIssued",
    "EquipmentReturned",
    "equipment_issue",
    "equipment_recovery",
]

#: Who issues equipment to new hires.
IT_DESK = "it-desk@example.com"


class EquipmentIssued(BaseModel):
    """The form IT submits once the new hire's equipment is handed over."""

    items: list[str]


class EquipmentReturned(BaseModel):
    """The form the manager submits once the leaver's equipment is back."""

    items: list[str]
    note: str = ""


class Equipment(BaseModel):
    """A child saga's data: whose equipment, who to remind, and what changed hands."""

    model_config = ConfigDict(frozen=True)

    employee_id: str
    full_name: str = ""
    manager_email: str = ""
    items: tuple[str, ...] = ()


def manager_of(data: Equipment) -> str:
    return data.manager_email


def _items(data: Equipment, form: EquipmentIssued | EquipmentReturned) -> Equipment:
    return data.model_copy(update={"items": tuple(form.items)})


def _issue_overdue(d: Equipment) -> NotifyManager:
    text = f"the equipment of {d.full_name or d.employee_id} is not issued yet"
    return NotifyManager(employee_id=d.employee_id, manager_email=IT_DESK, text=text)


def _return_overdue(d: Equipment) -> NotifyManager:
    text = f"the equipment of {d.full_name or d.employee_id} is not back yet"
    return NotifyManager(employee_id=d.employee_id, manager_email=d.manager_email, text=text)


equipment_issue = SagaDefinition(
    name="equipment_issue",
    version=1,
    trigger=EquipmentRequested,
    correlation_key="employee_id",
    data=Equipment,
    start=lambda e: Equipment.model_validate(e.model_dump()),
    stages=[
        Task(
            "issue_equipment",
            assignee=IT_DESK,
            form=EquipmentIssued,
            deadline=timedelta(days=3),
            escalate=NotifyManager,
            build=_issue_overdue,
            update=_items,
        )
    ],
)
equipment_recovery = SagaDefinition(
    name="equipment_recovery",
    version=1,
    trigger=EquipmentRecoveryRequested,
    correlation_key="employee_id",
    data=Equipment,
    start=lambda e: Equipment.model_validate(e.model_dump()),
    stages=[
        Task(
            "recover_equipment",
            assignee=manager_of,
            form=EquipmentReturned,
            deadline=timedelta(days=7),
            escalate=NotifyManager,
            build=_return_overdue,
            update=_items,
        )
    ],
)
