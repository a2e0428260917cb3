"""A saga told in business terms: the onboarding's describe hook and the generic story."""

from __future__ import annotations

from datetime import UTC, date, datetime

from bus import Event
from handlers.hr.contracts import EmployeeHired
from handlers.identity.contracts import (
    IdentityAccountDeprovisioned,
    IdentityAccountProvisioned,
    IdentityAccountProvisioningFailed,
)
from handlers.licensing.contracts import LicensesGranted, LicensesRevoked
from handlers.notifications.contracts import CancellationNotificationSent, ManagerNotificationSent
from handlers.payroll.contracts import PayrollRecordRejected
from sagas import Incoming, decide, start
from sagas.definitions.onboarding import onboarding
from sagas.state import SagaState
from sagas.story import story
from sagas.timeline import format_timeline

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
ALAN = EmployeeHired(
    employee_id="e-3",
    full_name="Alan Turing",
    department="research",
    manager_email="max@example.com",
    start_date=date(2027, 1, 11),
)


def run(replies: list[Event]) -> SagaState:
    state = start(onboarding, ALAN, message_id="hire-1", now=NOW).state
    for n, reply in enumerate(replies):
        incoming = Incoming(
            reply.bus_type, f"0000000{n}-0000-7000-8000-000000000000", state.saga_id, reply
        )
        state = decide(onboarding, state, incoming, NOW).state
    return state


ACCOUNT = IdentityAccountProvisioned(employee_id="e-3", login="aturing", email="a@example.com")
LICENSES = LicensesGranted(employee_id="e-3", email="a@example.com", products=["office", "chat"])
NOTIFIED = ManagerNotificationSent(employee_id="e-3", manager_email="max@example.com")


def test_a_compensated_onboarding_reads_as_what_happened_and_what_was_undone() -> None:
    state = run(
        [
            ACCOUNT,
            LICENSES,
            NOTIFIED,
            PayrollRecordRejected(employee_id="e-3", reason="missing tax id"),
            CancellationNotificationSent(employee_id="e-3", manager_email="max@example.com"),
            LicensesRevoked(employee_id="e-3", email="a@example.com", products=["office", "chat"]),
            IdentityAccountDeprovisioned(employee_id="e-3"),
        ]
    )
    assert story(onboarding, state) == (
        "Alan Turing (research, employee): account aturing created; licenses office, chat; "
        "manager max@example.com notified; payroll refused: missing tax id -> compensated: "
        "manager told, licenses revoked, account removed"
    )


def test_a_refused_account_fails_with_nothing_to_undo() -> None:
    state = run([IdentityAccountProvisioningFailed(employee_id="e-3", reason="login taken")])
    assert story(onboarding, state) == (
        "Alan Turing (research, employee): account refused: login taken -> failed, nothing to undo"
    )


def test_a_running_onboarding_says_what_it_waits_for() -> None:
    state = run([ACCOUNT])
    assert story(onboarding, state) == (
        "Alan Turing (research, employee): account aturing created -> running (assign_licenses)"
    )


def test_a_definition_without_a_describe_hook_gets_the_steps_outcomes() -> None:
    state = run([ACCOUNT, LICENSES])
    assert story(None, state) == (
        "onboarding:e-3: create_account, assign_licenses done -> running (notify_manager)"
    )


def test_the_timeline_shows_message_ids_only_when_verbose() -> None:
    state = run([ACCOUNT])
    plain = format_timeline(state, story=story(onboarding, state))
    verbose = format_timeline(state, verbose=True)
    assert plain.splitlines()[0].startswith("Alan Turing (research, employee)")
    assert "00000000-0000-7000-8000-000000000000" not in plain
    assert "identity.account.provisioned.v1 (0ms)" in plain
    assert "identity.account.provisioned.v1 00000000-0000-7000-8000-000000000000" in verbose
    assert verbose.startswith("onboarding:e-3  (onboarding v1)  RUNNING")
