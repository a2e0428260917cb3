"""Employee offboarding, orchestrated: access, licenses, the account, equipment, payroll.

::

    EmployeeLeft
      -> revoke_access: reclaim_licenses            (RevokeLicenses)
                      | revoke_repository_access    (RevokeRepositoryAccess)
      -> account: by account_fate
           legal_hold -> notify_legal               (the account is kept for legal)
           otherwise  -> remove_account             (DeprovisionAccount)
      -> recover_equipment                          (child saga equipment_recovery: a task
                                                     for the manager, EquipmentReturned)
      -> run_final_payroll                          (RunFinalPayroll)

Nothing is compensated: a person who left does not come back by undoing their
offboarding, and every command here is idempotent, so a re-send or a retry is safe. A
failed step parks nothing: the saga fails and says which system refused, for an operator.

``bus sagas graph offboarding`` draws it.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict

from handlers.hr.contracts import EmployeeLeft
from handlers.identity.contracts import DeprovisionAccount, IdentityAccountDeprovisioned
from handlers.licensing.contracts import LicensesRevoked, RevokeLicenses
from handlers.notifications.contracts import ManagerNotificationSent, NotifyManager
from handlers.payroll.contracts import FinalPayrollRejected, FinalPayrollRun, RunFinalPayroll
from handlers.repositories.contracts import RepositoryAccessRevoked, RevokeRepositoryAccess
from sagas.children import SubSaga
from sagas.definition import Choice, Parallel, SagaDefinition, Step
from sagas.definitions.equipment import Equipment, equipment_recovery
from sagas.state import SagaState
from sagas.story import failed_step, failure_reason, outcome

__all__ = ["LEGAL_ADDRESS", "Offboarding", "offboarding"]

#: Where a legal hold is reported (the notifications system mails it like a manager's note).
LEGAL_ADDRESS = "legal@example.com"


class Offboarding(BaseModel):
    """The offboarding saga's data: the leaver, then what the steps learned."""

    model_config = ConfigDict(frozen=True)

    employee_id: str
    full_name: str = ""
    login: str = ""
    email: str = ""
    manager_email: str = ""
    legal_hold: bool = False
    licenses_reclaimed: tuple[str, ...] = ()
    final_payroll_id: str = ""

    @classmethod
    def from_leaver(cls, left: EmployeeLeft) -> Offboarding:
        return cls.model_validate(left.model_dump())


def account_fate(data: Offboarding) -> str:
    """``legal_hold`` keeps the account for legal; anything else removes it."""
    return "legal_hold" if data.legal_hold else "remove"


def manager_of(data: Offboarding) -> str:
    return data.manager_email


def _licenses(data: Offboarding, e: LicensesRevoked) -> Offboarding:
    return data.model_copy(update={"licenses_reclaimed": tuple(e.products)})


def equipment_to_recover(data: Offboarding) -> Equipment:
    """The child saga's data: whose equipment, and which manager gets it back."""
    return Equipment(
        employee_id=data.employee_id, full_name=data.full_name, manager_email=data.manager_email
    )


def _final_pay(data: Offboarding, e: FinalPayrollRun) -> Offboarding:
    return data.model_copy(update={"final_payroll_id": e.payroll_id})


def _legal_notice(d: Offboarding) -> NotifyManager:
    text = f"{d.full_name or d.employee_id} left under a legal hold: account {d.login} is kept"
    return NotifyManager(employee_id=d.employee_id, manager_email=LEGAL_ADDRESS, text=text)


_FAILED = {
    "reclaim_licenses": "licenses not reclaimed",
    "revoke_repository_access": "repository access not revoked",
    "remove_account": "account not removed",
    "notify_legal": "legal not reached",
    "recover_equipment": "equipment not recovered",
    "run_final_payroll": "final payroll refused",
}


def describe(d: Offboarding, state: SagaState) -> str:
    """The offboarding in business terms.

    ``Ada Lovelace left: licenses office, chat reclaimed; repository access revoked; account
    kept for legal (hold); equipment back (child saga); final payroll pr-00001``
    """
    done = {n for n, s in state.steps.items() if s.completed_at is not None}
    facts = []
    if "reclaim_licenses" in done:
        facts.append(f"licenses {', '.join(d.licenses_reclaimed) or 'none'} reclaimed")
    if "revoke_repository_access" in done:
        facts.append("repository access revoked")
    if "remove_account" in done:
        facts.append(f"account {d.login or d.employee_id} removed")
    if "notify_legal" in done:
        facts.append("account kept for legal (hold)")
    if "recover_equipment" in done:
        facts.append("equipment back (child saga)")
    if "run_final_payroll" in done:
        facts.append(f"final payroll {d.final_payroll_id or '(no record)'}")
    failed = failed_step(state)
    if failed is not None:
        reason = failure_reason(failed)
        facts.append(
            _FAILED.get(failed.name, f"{failed.name} failed") + (f": {reason}" if reason else "")
        )
    who = d.full_name or d.employee_id
    return f"{who} left: {'; '.join(facts) or 'nothing done yet'}{outcome(state, {})}"


reclaim_licenses = Step(
    "reclaim_licenses",
    command=RevokeLicenses,
    success=LicensesRevoked,
    update=_licenses,
    timeout=timedelta(seconds=30),
)
revoke_repository_access = Step(
    "revoke_repository_access",
    command=RevokeRepositoryAccess,
    success=RepositoryAccessRevoked,
    timeout=timedelta(seconds=30),
)
remove_account = Step(
    "remove_account",
    command=DeprovisionAccount,
    success=IdentityAccountDeprovisioned,
    timeout=timedelta(seconds=30),
)
notify_legal = Step(
    "notify_legal", command=NotifyManager, build=_legal_notice, success=ManagerNotificationSent
)
recover_equipment = SubSaga(
    "recover_equipment", definition=equipment_recovery, data=equipment_to_recover
)
run_final_payroll = Step(
    "run_final_payroll",
    command=RunFinalPayroll,
    success=FinalPayrollRun,
    failure=FinalPayrollRejected,
    update=_final_pay,
    timeout=timedelta(minutes=5),
)

offboarding = SagaDefinition(
    name="offboarding",
    version=1,
    trigger=EmployeeLeft,
    correlation_key="employee_id",
    data=Offboarding,
    start=Offboarding.from_leaver,
    stages=[
        Parallel("revoke_access", steps=[reclaim_licenses, revoke_repository_access]),
        Choice(
            "account",
            by=account_fate,
            branches={"legal_hold": [notify_legal]},
            default=[remove_account],
        ),
        recover_equipment,
        run_final_payroll,
    ],
    describe=describe,
)
