"""Onboarding version 2: a desk task, a payroll path by contract and country, activation on
the start date. Version 1 (:mod:`sagas.definitions.onboarding`) stays registered beside it,
so instances started on it finish on it; new hires start on this one.

::

    EmployeeHired
      -> create_account                      (undo: DeprovisionAccount)
      -> manager_approval    when is_privileged   (wait, 3 days)
      -> access: assign_licenses | grant_repository_access when is_engineer
      -> assign_desk                         (task for the manager: DeskAssigned, 3 days)
      -> equipment                           (child saga equipment_issue: a task for IT)
      -> notify_manager                      (undo: NotifyCancellation)
      -> payroll: by payroll_route
           contractor -> nothing: no payroll record (create_payroll_record is skipped)
           de         -> de_registration_window (German payroll takes records from the
                         first day of the month before the start)
           otherwise  -> on at once (us and the rest)
      -> create_payroll_record when is_employee
      -> until_start_date                    (delay: the start day, 08:00 UTC)
      -> activate_account                    (ActivateAccount: the hire can sign in)
    HireChanged (a moved start date) re-plans the activation while the saga runs.
    HireWithdrawn cancels it: what completed is undone, last first.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from pydantic import BaseModel

from handlers.hr.contracts import EmployeeHired, HireChanged, HireWithdrawn
from handlers.identity.contracts import (
    ActivateAccount,
    IdentityAccountActivated,
    IdentityAccountActivationFailed,
)
from handlers.notifications.contracts import NotifyManager
from sagas.children import SubSaga
from sagas.definition import Choice, Delay, Parallel, SagaDefinition, Step, Task
from sagas.definitions.equipment import Equipment, equipment_issue
from sagas.definitions.onboarding import (
    Onboarding,
    assign_licenses,
    create_account,
    create_payroll_record,
    grant_repository_access,
    manager_approval,
    notify_manager,
)
from sagas.definitions.onboarding import describe as describe_v1
from sagas.state import SagaState
from sagas.updates import Update

__all__ = ["DeskAssigned", "OnboardingV2", "onboarding_v2"]


class DeskAssigned(BaseModel):
    """The form the manager submits: where the new hire sits."""

    desk: str


class OnboardingV2(Onboarding):
    """Version 2's data: version 1's, plus the country, the desk and the activation."""

    country: str = "us"
    desk: str = ""
    activated: bool = False

    @classmethod
    def from_hire(cls, hired: EmployeeHired) -> OnboardingV2:
        return cls.model_validate(hired.model_dump())


def payroll_route(data: OnboardingV2) -> str:
    """``contractor`` (no payroll), else the payroll country (``us``, ``de``, ...)."""
    return "contractor" if data.employment_type == "contractor" else data.country.lower()


def manager_of(data: OnboardingV2) -> str:
    return data.manager_email


def start_morning(data: OnboardingV2, now: datetime) -> datetime:
    """08:00 UTC on the start date: the account opens for the first day."""
    return datetime.combine(data.start_date, time(8), UTC)


def de_registration_opens(data: OnboardingV2, now: datetime) -> datetime:
    """German payroll takes a record from the first day of the month before the start."""
    first = data.start_date.replace(day=1)
    previous = (first - timedelta(days=1)).replace(day=1)
    return datetime.combine(previous, time(0), UTC)


def equipment_to_issue(data: OnboardingV2) -> Equipment:
    """The child saga's data: whose equipment IT issues."""
    return Equipment(
        employee_id=data.employee_id, full_name=data.full_name, manager_email=data.manager_email
    )


def apply_change(data: OnboardingV2, changed: HireChanged) -> OnboardingV2:
    """HR moved the start date or the department: the activation is re-planned."""
    return data.model_copy(update=changed.model_dump(exclude_none=True, exclude={"employee_id"}))


def _desk(data: OnboardingV2, form: DeskAssigned) -> OnboardingV2:
    return data.model_copy(update={"desk": form.desk})


def _activated(data: OnboardingV2, e: IdentityAccountActivated) -> OnboardingV2:
    return data.model_copy(update={"activated": True})


def _desk_overdue(d: OnboardingV2) -> NotifyManager:
    text = f"{d.full_name} starts on {d.start_date} and has no desk yet"
    return NotifyManager(employee_id=d.employee_id, manager_email=d.manager_email, text=text)


def describe(d: OnboardingV2, state: SagaState) -> str:
    """Version 1's sentence, with the desk, the payroll path and the activation.

    ``Katherine Johnson (finance, contractor): account katherine.johnson created; ...;
    desk F-12; no payroll (contractor); active from 2027-01-11``
    """
    told = describe_v1(d, state)
    head, arrow, tail = told.partition(" -> ")
    extra = []
    if d.desk:
        extra.append(f"desk {d.desk}")
    route = state.branches.get("payroll")
    if route == "contractor":
        extra.append("no payroll (contractor)")
    elif route is not None and d.payroll_id:
        extra.append(f"payroll in {route}")
    if d.activated:
        extra.append(f"active from {d.start_date}")
    if not extra:
        return told
    return f"{head}; {'; '.join(extra)}{arrow}{tail}"


assign_desk = Task(
    "assign_desk",
    assignee=manager_of,
    form=DeskAssigned,
    deadline=timedelta(days=3),
    escalate=NotifyManager,
    build=_desk_overdue,
    update=_desk,
)
activate_account = Step(
    "activate_account",
    command=ActivateAccount,
    success=IdentityAccountActivated,
    failure=IdentityAccountActivationFailed,
    update=_activated,
    timeout=timedelta(seconds=30),
)

onboarding_v2 = SagaDefinition(
    name="onboarding",
    version=2,
    trigger=EmployeeHired,
    correlation_key="employee_id",
    data=OnboardingV2,
    start=OnboardingV2.from_hire,
    stages=[
        create_account,
        manager_approval,
        Parallel("access", steps=[assign_licenses, grant_repository_access]),
        assign_desk,
        SubSaga("equipment", definition=equipment_issue, data=equipment_to_issue),
        notify_manager,
        Choice(
            "payroll",
            by=payroll_route,
            branches={
                "contractor": [],
                "de": [Delay("de_registration_window", until=de_registration_opens)],
            },
        ),
        create_payroll_record,  # when is_employee: not on the contractor path
        Delay("until_start_date", until=start_morning),
        activate_account,
    ],
    cancel_on=[HireWithdrawn],
    on_update=[Update(HireChanged, apply=apply_change)],
    describe=describe,
)
