"""The saga test kit: virtual time, commands and states to assert on, no handlers needed."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from bus import envelope_for, record_for
from handlers.hr.contracts import EmployeeHired, PrivilegedAccessRejected
from handlers.identity.contracts import (
    CreateAccount,
    DeprovisionAccount,
    IdentityAccountDeprovisioned,
    IdentityAccountProvisioned,
)
from sagas import SagaStatus, command_id
from sagas.definitions.onboarding import onboarding
from sagas.testing import SagaTestKit, VirtualClock

START = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
SAGA = "onboarding:e-1"


def hired(role: str = "member") -> EmployeeHired:
    return EmployeeHired(
        employee_id="e-1",
        full_name="Ada Lovelace",
        department="engineering",
        manager_email="boss@example.com",
        role=role,  # type: ignore[arg-type]
        start_date=date(2026, 7, 1),
    )


def provisioned() -> IdentityAccountProvisioned:
    return IdentityAccountProvisioned(employee_id="e-1", login="ada", email="ada@example.com")


def test_the_virtual_clock_moves_only_forward_and_only_when_told() -> None:
    clock = VirtualClock(START)
    assert clock() == START
    clock.advance(timedelta(days=3))
    assert clock() == START + timedelta(days=3)
    with pytest.raises(ValueError, match="positive"):
        clock.advance(timedelta(seconds=-1))
    with pytest.raises(ValueError, match="aware"):
        VirtualClock(datetime(2026, 1, 1))


async def test_a_timeout_fires_exactly_when_virtual_time_reaches_it() -> None:
    async with SagaTestKit(onboarding, start=START) as kit:
        await kit.publish(hired())
        await kit.drain()
        assert kit.commands(CreateAccount) == [
            CreateAccount(employee_id="e-1", full_name="Ada Lovelace", email_domain="example.com")
        ]
        await kit.advance(timedelta(seconds=29))
        assert len(kit.commands(CreateAccount)) == 1
        await kit.advance(timedelta(seconds=1))
        resent = kit.sent(SAGA)[-1]
        assert resent.envelope.id == command_id(SAGA, "create_account", "action", 2)
        assert resent.envelope.time == START + timedelta(seconds=30)
        state = await kit.state(SAGA)
        assert state.steps["create_account"].timer_at == START + timedelta(seconds=60)


async def test_a_three_day_deadline_passes_in_one_call() -> None:
    async with SagaTestKit(onboarding, start=START) as kit:
        await kit.publish(hired(role="admin"))
        await kit.drain()
        await kit.reply(provisioned(), saga_id=SAGA)
        await kit.drain()
        assert ("waiting", "manager_approval") in await kit.timeline(SAGA)
        await kit.advance(timedelta(days=3))
        assert kit.commands()[-1] == DeprovisionAccount(employee_id="e-1")
        await kit.reply(IdentityAccountDeprovisioned(employee_id="e-1"), saga_id=SAGA)
        await kit.drain()
        state = await kit.state(SAGA)
    assert state.status == SagaStatus.COMPENSATED
    assert state.updated_at == START + timedelta(days=3)


async def test_a_rejection_is_routed_by_the_correlation_key_not_the_correlation_id() -> None:
    async with SagaTestKit(onboarding, start=START) as kit:
        await kit.publish(hired(role="admin"))
        await kit.drain()
        await kit.reply(provisioned(), saga_id=SAGA)
        await kit.drain()
        await kit.publish(PrivilegedAccessRejected(employee_id="e-1", approver="boss"))
        await kit.drain()
        assert kit.command_types(SAGA)[-1] == DeprovisionAccount.bus_type
        assert await kit.status(SAGA) == SagaStatus.COMPENSATING


async def test_commands_are_filtered_by_type_and_saga_and_carry_their_envelopes() -> None:
    async with SagaTestKit(onboarding, start=START) as kit:
        await kit.publish(hired())
        await kit.publish(hired().model_copy(update={"employee_id": "e-2"}))
        await kit.drain()
        assert len(kit.commands()) == 2
        assert [c.employee_id for c in kit.commands(CreateAccount, saga_id="onboarding:e-2")] == [
            "e-2"
        ]
        assert kit.commands(DeprovisionAccount) == []
        [sent] = kit.sent(SAGA)
        assert sent.saga_id == SAGA
        assert sent.envelope.source == "bus://sagas/onboarding"


async def test_an_unknown_saga_is_a_clear_assertion() -> None:
    async with SagaTestKit(onboarding) as kit:
        with pytest.raises(AssertionError, match="no saga 'onboarding:e-9' was started"):
            await kit.state("onboarding:e-9")


async def test_a_second_trigger_for_a_saga_id_in_use_is_refused_loudly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def hire(message_id: str) -> None:
        env = envelope_for(hired(), source="/hr", id=message_id, time=START)
        await kit.transport.publish(record_for(hired(), env))
        await kit.drain()

    async with SagaTestKit(onboarding, start=START) as kit:
        await hire("hire-1")
        await hire("hire-1")  # the same trigger again: a duplicate
        assert kit.coordinator.stats.refused_starts == 0
        assert "not started" not in caplog.text
        await hire("rehire-2")  # another hire of the same employee id
        assert kit.coordinator.stats.refused_starts == 1
        assert (
            "hr.employee.hired.v1 rehire-2 not started: saga onboarding:e-1 exists (running, "
            "started by hire-1" in caplog.text
        )
        assert len(kit.commands(CreateAccount)) == 1
        assert (await kit.state(SAGA)).trigger_id == "hire-1"
