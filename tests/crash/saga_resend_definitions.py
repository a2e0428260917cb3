"""Onboarding as in tests/crash/saga_definitions.py, but every step times out after
1 s (200 attempts): slow systems (``SAGA_CRASH_SLOW_S``) and kills make replies come
later than that, so steps are re-sent while their first attempt is still queued, running,
or done. Each re-send carries attempt 1's id as its idempotency key, and the handlers'
dedup must absorb it.

``bus sagas run -d tests.crash.saga_resend_definitions`` runs it.
"""

from __future__ import annotations

from datetime import timedelta

from handlers.hr.contracts import EmployeeHired, HireWithdrawn
from sagas.definition import Parallel, SagaDefinition, Step
from sagas.definitions import onboarding as real
from tests.crash.saga_definitions import manager_approval

__all__ = ["TIMEOUT", "onboarding"]

TIMEOUT = timedelta(seconds=1)


def _quick(step: Step) -> Step:
    """``step`` with the short timeout, and attempts enough never to give up here."""
    return Step(
        step.name,
        command=step.command,
        success=step.success,
        failure=step.failure,
        build=step.build,
        update=step.update,
        compensation=step.compensation,
        timeout=TIMEOUT,
        max_attempts=200,
        when=step.when,
        not_before=step.not_before,
        rerun_on=step.rerun_on,
    )


onboarding = SagaDefinition(
    name="onboarding",
    version=1,
    trigger=EmployeeHired,
    correlation_key="employee_id",
    data=real.Onboarding,
    start=real.Onboarding.from_hire,
    stages=[
        _quick(real.create_account),
        manager_approval,
        Parallel(
            "access", steps=[_quick(real.assign_licenses), _quick(real.grant_repository_access)]
        ),
        _quick(real.notify_manager),
        _quick(real.create_payroll_record),
    ],
    cancel_on=[HireWithdrawn],
)
