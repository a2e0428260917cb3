"""A parent and a child saga for the stage crash tests (tests/crash/test_saga_stage_crash.py).

``bus sagas run -d tests.crash.saga_child_definitions`` runs ``parent_onboarding``: each
hire's account is created, then a child saga ``welcome`` (a 3-5 s ``Delay``, then the
manager told) runs to its end, so a coordinator SIGKILLed at random moments is often killed
while children run, or while their start or end report is on its way over the bus.
"""

from __future__ import annotations

from bus import Event
from handlers.hr.contracts import EmployeeHired
from sagas.children import SubSaga
from sagas.definition import Delay, SagaDefinition
from sagas.definitions import onboarding as real
from tests.crash.saga_stage_definitions import a_few_seconds_on

__all__ = ["parent_onboarding", "welcome"]


class WelcomeRequested(
    Event, type="crash.welcome.requested.v1", topic="hr.events", key="employee_id"
):
    """Never published here: the welcome saga starts as a child only."""

    employee_id: str


def same_data(data: real.Onboarding) -> real.Onboarding:
    return data


welcome = SagaDefinition(
    name="welcome",
    version=1,
    trigger=WelcomeRequested,
    correlation_key="employee_id",
    data=real.Onboarding,
    start=lambda e: real.Onboarding.model_validate(e.model_dump()),  # never: a child only
    stages=[Delay("settle_in", until=a_few_seconds_on), real.notify_manager],
)

parent_onboarding = SagaDefinition(
    name="parent_onboarding",
    version=1,
    trigger=EmployeeHired,
    correlation_key="employee_id",
    data=real.Onboarding,
    start=real.Onboarding.from_hire,
    stages=[real.create_account, SubSaga("welcome", definition=welcome, data=same_data)],
)
