"""The payroll, repositories and identity handlers serve saga commands with correlated
replies."""

from __future__ import annotations

from datetime import date

from bus import TestBus
from handlers.identity.contracts import (
    ActivateAccount,
    IdentityAccountActivated,
    IdentityAccountActivationFailed,
)
from handlers.identity.handler import build_command_app as identity_commands
from handlers.identity.system import Directory
from handlers.payroll.contracts import (
    CreatePayrollRecord,
    FinalPayrollRejected,
    FinalPayrollRun,
    PayrollRecordCreated,
    PayrollRecordRejected,
    RunFinalPayroll,
)
from handlers.payroll.handler import build_app as payroll_app
from handlers.payroll.system import Payroll
from handlers.repositories.contracts import (
    GrantRepositoryAccess,
    RepositoryAccessDenied,
    RepositoryAccessGranted,
    RepositoryAccessRevoked,
    RevokeRepositoryAccess,
)
from handlers.repositories.handler import build_app as repositories_app
from handlers.repositories.system import CodeHost


def record(employee_id: str) -> CreatePayrollRecord:
    return CreatePayrollRecord(
        employee_id=employee_id, full_name="Ada", start_date=date(2027, 1, 4)
    )


async def test_payroll_replies_created_or_rejected_keeping_the_saga_correlation() -> None:
    payroll = Payroll(reject={"e-2"})
    async with TestBus(payroll_app(payroll)) as bus:
        await bus.publish(record("e-1"), correlationid="onboarding:e-1")
        await bus.publish(record("e-1"), correlationid="onboarding:e-1")  # a re-send
        await bus.publish(record("e-2"), correlationid="onboarding:e-2")
        await bus.drain()
        created = bus.envelopes(PayrollRecordCreated)
        [rejected] = bus.messages(PayrollRecordRejected)
    assert {e.correlationid for e in created} == {"onboarding:e-1"}
    assert len(created) == 2
    assert list(payroll.records) == ["e-1"]  # idempotent by employee id
    assert rejected.employee_id == "e-2"


async def test_payroll_failing_by_rate_is_retried_by_the_bus() -> None:
    payroll = Payroll(failure_rate=0.5)
    async with TestBus(payroll_app(payroll)) as bus:
        for n in range(5):
            await bus.publish(record(f"e-{n}"))
        await bus.drain()
        created = bus.messages(PayrollRecordCreated)
        dead = bus.dead_letters(CreatePayrollRecord.bus_topic)
    # Every command ends explicitly: created (after in-process retries) or dead-lettered.
    assert len(created) + len(dead) == 5
    assert sorted(payroll.records) == sorted(c.employee_id for c in created)
    assert len(created) >= 3  # with 3 attempts at 50% most get through


async def test_repository_access_is_granted_denied_and_revoked() -> None:
    host = CodeHost(deny={"e-9"})
    async with TestBus(repositories_app(host)) as bus:
        await bus.publish(
            GrantRepositoryAccess(employee_id="e-1", login="ada", department="engineering")
        )
        await bus.publish(
            GrantRepositoryAccess(employee_id="e-9", login="eve", department="engineering")
        )
        await bus.drain()
        assert host.grants == {"ada": ["platform", "web", "infra"]}
        await bus.publish(RevokeRepositoryAccess(employee_id="e-1", login="ada"))
        await bus.drain()
        [granted] = bus.messages(RepositoryAccessGranted)
        [denied] = bus.messages(RepositoryAccessDenied)
        [revoked] = bus.messages(RepositoryAccessRevoked)
    assert granted.repositories == ["platform", "web", "infra"]
    assert (denied.employee_id, revoked.login) == ("e-9", "ada")
    assert host.grants == {}


async def test_final_payroll_closes_the_record_once_and_answers_for_a_contractor_too() -> None:
    payroll = Payroll()
    payroll.create_record("e-1", "Ada", date(2027, 1, 4))
    payroll.reject_reasons["e-3"] = "open expense claims"
    payroll.reject.add("e-3")
    async with TestBus(payroll_app(payroll)) as bus:
        await bus.publish(RunFinalPayroll(employee_id="e-1"), correlationid="offboarding:e-1")
        await bus.publish(RunFinalPayroll(employee_id="e-1"), correlationid="offboarding:e-1")
        await bus.publish(RunFinalPayroll(employee_id="e-2"))  # a contractor: no record
        await bus.publish(RunFinalPayroll(employee_id="e-3"))
        await bus.drain()
        ran = bus.messages(FinalPayrollRun)
        envelopes = bus.envelopes(FinalPayrollRun)
        [rejected] = bus.messages(FinalPayrollRejected)
    assert [(e.employee_id, e.payroll_id) for e in ran] == [
        ("e-1", "pr-00001"),
        ("e-1", "pr-00001"),
        ("e-2", ""),
    ]
    assert envelopes[0].correlationid == "offboarding:e-1"
    assert payroll.closed == {"e-1", "e-2"}
    assert (rejected.employee_id, rejected.reason) == ("e-3", "open expense claims")


async def test_identity_activates_an_existing_account_and_refuses_a_missing_one() -> None:
    directory = Directory()
    directory.create_account("e-1", "Ada Lovelace")
    async with TestBus(identity_commands(directory)) as bus:
        await bus.publish(ActivateAccount(employee_id="e-1"), correlationid="onboarding:e-1")
        await bus.publish(ActivateAccount(employee_id="e-1"))  # a re-send: still active
        await bus.publish(ActivateAccount(employee_id="e-2"))
        await bus.drain()
        activated = bus.messages(IdentityAccountActivated)
        envelopes = bus.envelopes(IdentityAccountActivated)
        [failed] = bus.messages(IdentityAccountActivationFailed)
    assert [e.login for e in activated] == ["ada.lovelace", "ada.lovelace"]
    assert envelopes[0].correlationid == "onboarding:e-1"
    assert directory.active == {"e-1"}
    assert failed.employee_id == "e-2"
    assert "no account" in failed.reason
