"""The onboarding definition driven through the pure core: branches, waits, groups, undo."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from bus import Event
from handlers.hr.contracts import (
    EmployeeHired,
    HireWithdrawn,
    PrivilegedAccessApproved,
    PrivilegedAccessRejected,
)
from handlers.identity.contracts import IdentityAccountDeprovisioned, IdentityAccountProvisioned
from handlers.licensing.contracts import LicensesGranted, LicensesRevoked
from handlers.notifications.contracts import (
    CancellationNotificationSent,
    ManagerNotificationSent,
)
from handlers.payroll.contracts import PayrollRecordCreated, PayrollRecordRejected
from handlers.repositories.contracts import RepositoryAccessGranted, RepositoryAccessRevoked
from sagas import Incoming, SagaStatus, StepStatus, TimerFired, Transition, decide, start
from sagas.definitions.onboarding import onboarding

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def hire(**kw: object) -> EmployeeHired:
    fields: dict[str, object] = {
        "employee_id": "e-1",
        "full_name": "Ada Lovelace",
        "department": "engineering",
        "manager_email": "grace@example.com",
        "start_date": date(2026, 12, 7),
    }
    fields.update(kw)
    return EmployeeHired.model_validate(fields)


def reply(t: Transition, event: Event, n: int = 0) -> Transition:
    msg = Incoming(
        type=event.bus_type,
        message_id=f"r-{event.bus_type}-{n}",
        correlation_id=t.state.saga_id,
        data=event,
    )
    return decide(onboarding, t.state, msg, T0 + timedelta(minutes=n + 1))


def sent(t: Transition) -> list[str]:
    return [type(c.message).__name__ for c in t.commands]


ACCOUNT = IdentityAccountProvisioned(employee_id="e-1", login="ada", email="ada@example.com")
LICENSES = LicensesGranted(employee_id="e-1", email="ada@example.com", products=["office"])
REPOS = RepositoryAccessGranted(employee_id="e-1", login="ada", repositories=["web"])
NOTIFIED = ManagerNotificationSent(employee_id="e-1", manager_email="grace@example.com")


def test_an_engineer_gets_licenses_and_repositories_in_parallel_then_payroll() -> None:
    t = start(onboarding, hire(), message_id="m-1", now=T0)
    assert t.state.saga_id == "onboarding:e-1"
    assert sent(t) == ["CreateAccount"]
    t = reply(t, ACCOUNT, 1)
    assert sent(t) == ["AssignLicenses", "GrantRepositoryAccess"]
    assert t.state.steps["manager_approval"].status == StepStatus.SKIPPED
    t = reply(t, REPOS, 2)
    assert sent(t) == []
    t = reply(t, LICENSES, 3)
    assert sent(t) == ["NotifyManager"]
    assert "office, web" in t.commands[0].message.text  # type: ignore[attr-defined]
    t = reply(t, NOTIFIED, 4)
    assert sent(t) == ["CreatePayrollRecord"]
    t = reply(t, PayrollRecordCreated(employee_id="e-1", payroll_id="pr-1"), 5)
    assert t.state.status == SagaStatus.COMPLETED
    assert t.state.data["payroll_id"] == "pr-1"
    assert t.state.data["repositories"] == ["web"]


def test_a_contractor_in_sales_skips_repositories_and_payroll() -> None:
    t = start(
        onboarding, hire(department="sales", employment_type="contractor"), message_id="m", now=T0
    )
    t = reply(t, ACCOUNT, 1)
    assert sent(t) == ["AssignLicenses"]
    t = reply(t, LICENSES, 2)
    t = reply(t, NOTIFIED, 3)
    assert t.state.status == SagaStatus.COMPLETED
    assert t.state.steps["create_payroll_record"].status == StepStatus.SKIPPED
    assert t.state.steps["grant_repository_access"].status == StepStatus.SKIPPED


def test_an_admin_waits_for_approval_and_is_undone_when_the_deadline_passes() -> None:
    t = start(onboarding, hire(role="admin"), message_id="m", now=T0)
    t = reply(t, ACCOUNT, 1)
    assert sent(t) == []
    (deadline,) = t.timers_to_set
    assert deadline.at == T0 + timedelta(minutes=2, days=3)
    t = decide(onboarding, t.state, TimerFired(deadline.id), deadline.at)
    assert sent(t) == ["DeprovisionAccount"]
    t = reply(t, IdentityAccountDeprovisioned(employee_id="e-1"), 9)
    assert t.state.status == SagaStatus.COMPENSATED
    assert "deadline" in (t.state.reason or "")


def test_an_approved_admin_goes_on_and_a_rejection_after_it_changes_nothing() -> None:
    t = start(onboarding, hire(role="admin"), message_id="m", now=T0)
    t = reply(t, ACCOUNT, 1)
    t = reply(t, PrivilegedAccessApproved(employee_id="e-1", approver="grace"), 2)
    assert sent(t) == ["AssignLicenses", "GrantRepositoryAccess"]
    assert t.state.data["approved_by"] == "grace"
    late = reply(t, PrivilegedAccessRejected(employee_id="e-1", approver="x"), 3)
    assert not late.changed
    assert late.state is t.state


def test_payroll_rejection_undoes_everything_in_reverse_order_of_completion() -> None:
    t = start(onboarding, hire(), message_id="m", now=T0)
    t = reply(t, ACCOUNT, 1)
    t = reply(t, LICENSES, 2)  # licenses complete before repositories
    t = reply(t, REPOS, 3)
    t = reply(t, NOTIFIED, 4)
    t = reply(t, PayrollRecordRejected(employee_id="e-1", reason="no bank account"), 5)
    undone = []
    replies: list[Event] = [
        CancellationNotificationSent(employee_id="e-1", manager_email="grace@example.com"),
        RepositoryAccessRevoked(employee_id="e-1", login="ada"),
        LicensesRevoked(employee_id="e-1", email="ada@example.com", products=["office"]),
        IdentityAccountDeprovisioned(employee_id="e-1"),
    ]
    for n, r in enumerate(replies):
        undone += sent(t)
        t = reply(t, r, 10 + n)
    assert undone == [
        "NotifyCancellation",
        "RevokeRepositoryAccess",
        "RevokeLicenses",
        "DeprovisionAccount",
    ]
    assert t.state.status == SagaStatus.COMPENSATED


def test_hire_withdrawn_cancels_after_the_in_flight_group_settles() -> None:
    t = start(onboarding, hire(), message_id="m", now=T0)
    t = reply(t, ACCOUNT, 1)
    t = reply(t, HireWithdrawn(employee_id="e-1"), 2)
    assert t.state.status == SagaStatus.COMPENSATING
    assert sent(t) == []  # licenses and repositories are still in flight
    t = reply(t, LICENSES, 3)
    assert sent(t) == []
    t = reply(t, REPOS, 4)
    assert sent(t) == ["RevokeRepositoryAccess"]
    t = reply(t, RepositoryAccessRevoked(employee_id="e-1", login="ada"), 5)
    t = reply(t, LicensesRevoked(employee_id="e-1", email="ada@example.com", products=[]), 6)
    t = reply(t, IdentityAccountDeprovisioned(employee_id="e-1"), 7)
    assert t.state.status == SagaStatus.CANCELLED
