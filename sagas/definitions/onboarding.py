"""Employee onboarding, orchestrated: account, approval, access, manager, payroll.

::

    EmployeeHired
      -> create_account                      (undo: DeprovisionAccount)
      -> manager_approval    when is_privileged   (wait, 3 days)
      -> access: assign_licenses             (undo: RevokeLicenses)
               | grant_repository_access when is_engineer (undo: RevokeRepositoryAccess)
      -> notify_manager                      (undo: NotifyCancellation)
      -> create_payroll_record when is_employee     (contractors have no payroll)
    HireWithdrawn cancels it: what completed is undone, last first.

``bus sagas graph onboarding`` draws it (:func:`sagas.render.render_mermaid`).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict

from handlers.hr.contracts import (
    EmployeeHired,
    HireWithdrawn,
    PrivilegedAccessApproved,
    PrivilegedAccessRejected,
)
from handlers.identity.contracts import (
    CreateAccount,
    DeprovisionAccount,
    IdentityAccountDeprovisioned,
    IdentityAccountProvisioned,
    IdentityAccountProvisioningFailed,
)
from handlers.licensing.contracts import (
    AssignLicenses,
    LicenseGrantFailed,
    LicensesGranted,
    LicensesRevoked,
    RevokeLicenses,
)
from handlers.notifications.contracts import (
    CancellationNotificationSent,
    ManagerNotificationSent,
    NotifyCancellation,
    NotifyManager,
)
from handlers.payroll.contracts import (
    CreatePayrollRecord,
    PayrollRecordCreated,
    PayrollRecordRejected,
)
from handlers.repositories.contracts import (
    GrantRepositoryAccess,
    RepositoryAccessDenied,
    RepositoryAccessGranted,
    RepositoryAccessRevoked,
    RevokeRepositoryAccess,
)
from sagas.definition import Compensation, Parallel, SagaDefinition, Step, Wait
from sagas.state import SagaState
from sagas.story import failed_step, failure_reason, outcome

__all__ = ["Onboarding", "onboarding"]


class Onboarding(BaseModel):
    """The onboarding saga's data: the hire, then what the steps learned."""

    model_config = ConfigDict(frozen=True)

    employee_id: str
    full_name: str
    email_domain: str
    department: str
    manager_email: str
    employment_type: Literal["employee", "contractor"]
    role: Literal["member", "admin"]
    start_date: date
    login: str = ""
    email: str = ""
    products: tuple[str, ...] = ()
    repositories: tuple[str, ...] = ()
    approved_by: str = ""
    payroll_id: str = ""

    @classmethod
    def from_hire(cls, hired: EmployeeHired) -> Onboarding:
        return cls.model_validate(hired.model_dump())


def is_privileged(data: Onboarding) -> bool:
    return data.role == "admin"


def is_engineer(data: Onboarding) -> bool:
    return data.department.lower() == "engineering"


def is_employee(data: Onboarding) -> bool:
    return data.employment_type == "employee"


def _account(data: Onboarding, e: IdentityAccountProvisioned) -> Onboarding:
    return data.model_copy(update={"login": e.login, "email": e.email})


def _approved(data: Onboarding, e: PrivilegedAccessApproved) -> Onboarding:
    return data.model_copy(update={"approved_by": e.approver})


def _licenses(data: Onboarding, e: LicensesGranted) -> Onboarding:
    return data.model_copy(update={"products": tuple(e.products)})


def _repositories(data: Onboarding, e: RepositoryAccessGranted) -> Onboarding:
    return data.model_copy(update={"repositories": tuple(e.repositories)})


def _payroll(data: Onboarding, e: PayrollRecordCreated) -> Onboarding:
    return data.model_copy(update={"payroll_id": e.payroll_id})


def _welcome(d: Onboarding) -> NotifyManager:
    access = ", ".join(d.products + d.repositories)
    text = f"{d.full_name} starts on {d.start_date}: {d.email} is ready with {access}"
    return NotifyManager(employee_id=d.employee_id, manager_email=d.manager_email, text=text)


def _called_off(d: Onboarding) -> NotifyCancellation:
    text = f"the onboarding of {d.full_name} was called off; their access is removed"
    return NotifyCancellation(employee_id=d.employee_id, manager_email=d.manager_email, text=text)


#: What a failed step means for the hire, and what undoing a step did.
_FAILED = {
    "create_account": "account refused",
    "manager_approval": "privileged access not approved",
    "assign_licenses": "licenses refused",
    "grant_repository_access": "repository access denied",
    "notify_manager": "manager not reached",
    "create_payroll_record": "payroll refused",
}
_UNDONE = {
    "create_account": "account removed",
    "assign_licenses": "licenses revoked",
    "grant_repository_access": "repository access revoked",
    "notify_manager": "manager told",
}


def describe(d: Onboarding, state: SagaState) -> str:
    """The onboarding in business terms: who, what they got, what failed, what was undone.

    ``Alan Turing (research, employee): account aturing created; licenses google-workspace,
    slack; manager notified; payroll refused: missing tax id -> compensated: manager told,
    licenses revoked, account removed``
    """
    facts = []
    if d.login:
        facts.append(f"account {d.login} created")
    if d.approved_by:
        facts.append(f"approved by {d.approved_by}")
    if d.products:
        facts.append(f"licenses {', '.join(d.products)}")
    if d.repositories:
        facts.append(f"repositories {', '.join(d.repositories)}")
    notified = state.steps.get("notify_manager")
    if notified is not None and notified.completed_at is not None:
        facts.append(f"manager {d.manager_email} notified")
    if d.payroll_id:
        facts.append(f"payroll record {d.payroll_id}")
    failed = failed_step(state)
    if failed is not None:
        reason = failure_reason(failed)
        facts.append(
            _FAILED.get(failed.name, f"{failed.name} failed") + (f": {reason}" if reason else "")
        )
    who = f"{d.full_name} ({d.department}, {d.employment_type}{', admin' if is_privileged(d) else ''})"
    return f"{who}: {'; '.join(facts) or 'nothing done yet'}{outcome(state, _UNDONE)}"


create_account = Step(
    "create_account",
    command=CreateAccount,
    success=IdentityAccountProvisioned,
    failure=IdentityAccountProvisioningFailed,
    update=_account,
    compensation=Compensation(DeprovisionAccount, success=IdentityAccountDeprovisioned),
    timeout=timedelta(seconds=30),
)
manager_approval = Wait(
    "manager_approval",
    event=PrivilegedAccessApproved,
    rejected=PrivilegedAccessRejected,
    deadline=timedelta(days=3),
    update=_approved,
    when=is_privileged,
)
assign_licenses = Step(
    "assign_licenses",
    command=AssignLicenses,
    success=LicensesGranted,
    failure=LicenseGrantFailed,
    update=_licenses,
    compensation=Compensation(RevokeLicenses, success=LicensesRevoked),
    timeout=timedelta(seconds=30),
)
grant_repository_access = Step(
    "grant_repository_access",
    command=GrantRepositoryAccess,
    success=RepositoryAccessGranted,
    failure=RepositoryAccessDenied,
    update=_repositories,
    compensation=Compensation(RevokeRepositoryAccess, success=RepositoryAccessRevoked),
    timeout=timedelta(seconds=30),
    when=is_engineer,
)
notify_manager = Step(
    "notify_manager",
    command=NotifyManager,
    build=_welcome,
    success=ManagerNotificationSent,
    compensation=Compensation(
        NotifyCancellation, build=_called_off, success=CancellationNotificationSent
    ),
)
create_payroll_record = Step(
    "create_payroll_record",
    command=CreatePayrollRecord,
    success=PayrollRecordCreated,
    failure=PayrollRecordRejected,
    update=_payroll,
    timeout=timedelta(minutes=5),
    when=is_employee,
)

onboarding = SagaDefinition(
    name="onboarding",
    version=1,
    trigger=EmployeeHired,
    correlation_key="employee_id",
    data=Onboarding,
    start=Onboarding.from_hire,
    stages=[
        create_account,
        manager_approval,
        Parallel("access", steps=[assign_licenses, grant_repository_access]),
        notify_manager,
        create_payroll_record,
    ],
    cancel_on=[HireWithdrawn],
    describe=describe,
)
