"""The onboarding saga for the saga crash tests: the real one, its approval deadline 5 s.

``bus sagas run -d tests.crash.saga_definitions`` runs it. Admin hires wait for a manager's
approval that never comes, so their deadline fires (after the coordinator's restarts) and
the account created before it is deprovisioned.
"""

from __future__ import annotations

from datetime import timedelta

from handlers.hr.contracts import (
    EmployeeHired,
    HireWithdrawn,
    PrivilegedAccessApproved,
    PrivilegedAccessRejected,
)
from sagas.definition import Parallel, SagaDefinition, Wait
from sagas.definitions import onboarding as real

__all__ = ["DEADLINE", "onboarding"]

DEADLINE = timedelta(seconds=5)

manager_approval = Wait(
    "manager_approval",
    event=PrivilegedAccessApproved,
    rejected=PrivilegedAccessRejected,
    deadline=DEADLINE,
    update=real._approved,
    when=real.is_privileged,
)

onboarding = SagaDefinition(
    name="onboarding",
    version=1,
    trigger=EmployeeHired,
    correlation_key="employee_id",
    data=real.Onboarding,
    start=real.Onboarding.from_hire,
    stages=[
        real.create_account,
        manager_approval,
        Parallel("access", steps=[real.assign_licenses, real.grant_repository_access]),
        real.notify_manager,
        real.create_payroll_record,
    ],
    cancel_on=[HireWithdrawn],
)
