"""Sagas with time-based stages for the stage crash tests (tests/crash/test_saga_stage_crash.py).

``bus sagas run -d tests.crash.saga_stage_definitions`` runs ``timed_onboarding``: each hire
is held by a :class:`~sagas.waits.Delay` of 3 to 5 s (from its employee id's last digit)
before its account is created and its manager told, so a coordinator SIGKILLed at random
moments is often killed while delays are pending.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from handlers.hr.contracts import EmployeeHired
from sagas.definition import Delay, SagaDefinition
from sagas.definitions import onboarding as real

__all__ = ["DELAY_S", "timed_onboarding"]

#: The shortest delay, in seconds.
DELAY_S = 3


def a_few_seconds_on(data: real.Onboarding, now: datetime) -> datetime:
    return now + timedelta(seconds=DELAY_S + int(data.employee_id[-1]) % 3)


timed_onboarding = SagaDefinition(
    name="timed_onboarding",
    version=1,
    trigger=EmployeeHired,
    correlation_key="employee_id",
    data=real.Onboarding,
    start=real.Onboarding.from_hire,
    stages=[Delay("settle_in", until=a_few_seconds_on), real.create_account, real.notify_manager],
)
