"""Onboarding version 2 through the test kit (memory), with the real handler apps: the desk
task, the payroll path by contract and country, activation on the start date; version 1
instances keep running on version 1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta

from handlers.hr.contracts import EmployeeHired, HireChanged
from handlers.identity.contracts import IdentityAccountProvisioned
from sagas import Incoming, SagaStatus, start
from sagas.definitions.equipment import IT_DESK, equipment_issue
from sagas.definitions.onboarding import onboarding
from sagas.definitions.onboarding_v2 import onboarding_v2
from sagas.demo import Systems
from sagas.render import render_mermaid
from sagas.story import story
from sagas.testing import SagaTestKit
from sagas.versions import Catalog, decide_versioned

T0 = datetime(2027, 1, 5, 9, 0, tzinfo=UTC)
SAGA = "onboarding:e-1"
#: The equipment IT issues, a child saga of the onboarding.
CHILD = f"equipment_issue:{SAGA}/equipment"


def hire(**kw: object) -> EmployeeHired:
    fields: dict[str, object] = {
        "employee_id": "e-1",
        "full_name": "Ada Lovelace",
        "department": "engineering",
        "manager_email": "charles@example.com",
        "start_date": date(2027, 1, 11),
    }
    fields.update(kw)
    return EmployeeHired.model_validate(fields)


@asynccontextmanager
async def running(systems: Systems) -> AsyncIterator[SagaTestKit]:
    definitions = (onboarding, onboarding_v2, equipment_issue)
    async with SagaTestKit(*definitions, apps=systems.apps(), start=T0) as kit:
        yield kit


async def seated(kit: SagaTestKit, hired: EmployeeHired) -> None:
    await kit.publish(hired)
    await kit.drain()
    assert [t.step for t in await kit.tasks("charles@example.com")] == ["assign_desk"]
    await kit.complete_task(SAGA, "assign_desk", {"desk": "B-204"}, "charles")
    await kit.drain()
    assert [(t.saga_id, t.step) for t in await kit.tasks(IT_DESK)] == [(CHILD, "issue_equipment")]
    await kit.complete_task(CHILD, "issue_equipment", {"items": ["laptop"]}, "it")
    await kit.drain()


async def test_an_employee_gets_a_desk_payroll_and_an_account_active_from_the_start_date() -> None:
    systems = Systems()
    async with running(systems) as kit:
        await seated(kit, hire())
        state = await kit.state(SAGA)
        assert (state.version, state.status) == (2, SagaStatus.RUNNING)
        assert state.branches == {"payroll": "us"}
        assert "e-1" in systems.payroll.records
        assert "e-1" not in systems.directory.active  # not before the start date
        await kit.advance(timedelta(days=6))  # Jan 11, 09:00: past 08:00
        state = await kit.state(SAGA)
        assert state.status == SagaStatus.COMPLETED
        assert "e-1" in systems.directory.active
        told = story(onboarding_v2, state)
        assert "desk B-204; payroll in us; active from 2027-01-11" in told


async def test_a_start_date_moved_while_waiting_for_it_replans_the_activation() -> None:
    systems = Systems()
    async with running(systems) as kit:
        await seated(kit, hire())  # starts Jan 11
        await kit.publish(HireChanged(employee_id="e-1", start_date=date(2027, 1, 18)))
        await kit.drain()
        state = await kit.state(SAGA)
        assert state.steps["until_start_date"].timer_at == datetime(2027, 1, 18, 8, tzinfo=UTC)
        assert "replanned" in [h.event for h in state.history]
        await kit.advance(timedelta(days=6))  # Jan 11: the old date - nothing yet
        assert "e-1" not in systems.directory.active
        await kit.advance(timedelta(days=7))  # Jan 18
        assert await kit.status(SAGA) == SagaStatus.COMPLETED
        assert "e-1" in systems.directory.active


async def test_a_contractor_gets_no_payroll_record() -> None:
    systems = Systems()
    async with running(systems) as kit:
        await seated(kit, hire(employment_type="contractor", department="finance"))
        await kit.advance(timedelta(days=6))
        state = await kit.state(SAGA)
        assert state.status == SagaStatus.COMPLETED
        assert state.branches == {"payroll": "contractor"}
        assert systems.payroll.records == {}
        assert "no payroll (contractor)" in story(onboarding_v2, state)


async def test_german_payroll_is_registered_from_the_month_before_the_start() -> None:
    systems = Systems()
    async with running(systems) as kit:
        await seated(kit, hire(country="de", start_date=date(2027, 3, 8)))
        assert (await kit.state(SAGA)).branches == {"payroll": "de"}
        assert systems.payroll.records == {}  # the window opens on Feb 1
        await kit.advance(datetime(2027, 2, 1, 0, 1, tzinfo=UTC) - T0)
        assert "e-1" in systems.payroll.records
        await kit.advance(datetime(2027, 3, 8, 8, 1, tzinfo=UTC) - kit.clock.now)
        assert await kit.status(SAGA) == SagaStatus.COMPLETED


async def test_a_desk_not_assigned_in_three_days_reminds_the_manager() -> None:
    systems = Systems()
    async with running(systems) as kit:
        await kit.publish(hire())
        await kit.drain()
        await kit.advance(timedelta(days=3, minutes=1))
        assert [t.status for t in await kit.tasks()] == ["overdue"]
        assert systems.mailer.sent[-1][0] == "charles@example.com"
        assert "no desk yet" in systems.mailer.sent[-1][1]


async def test_a_withdrawn_hire_waiting_for_its_start_date_is_undone() -> None:
    systems = Systems()
    async with running(systems) as kit:
        await seated(kit, hire())
        await kit.cancel(SAGA, "hire withdrawn")
        await kit.drain()
        assert await kit.status(SAGA) == SagaStatus.CANCELLED
        assert systems.directory.accounts == {}


def test_new_hires_start_on_version_2_and_version_1_instances_finish_on_version_1() -> None:
    catalog = Catalog([onboarding, onboarding_v2])
    assert catalog.triggered_by(EmployeeHired.bus_type) == [onboarding_v2]
    t = start(onboarding, hire(department="sales"), message_id="h-1", now=T0)
    made = IdentityAccountProvisioned(employee_id="e-1", login="ada", email="ada@example.com")
    t = decide_versioned(
        catalog, t.state, Incoming(made.bus_type, "r-1", t.state.saga_id, made), T0
    )
    assert t.state.version == 1
    assert [c.step for c in t.commands] == ["assign_licenses"]  # v1: no desk task, no delay


def test_the_diagram_draws_the_desk_task_the_payroll_paths_and_the_start_date() -> None:
    diagram = render_mermaid(onboarding_v2)
    for text in (
        "assign_desk : task for manager_of: form DeskAssigned",
        "payroll_route = contractor",
        "payroll_route = de",
        "until_start_date : wait until start_morning",
        "de_registration_window : wait until de_registration_opens",
        "activate_account",
        "equipment : child saga equipment_issue, awaited to its end",
        "HireChanged",
    ):
        assert text in diagram, diagram
