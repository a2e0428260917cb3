"""The offboarding definition through the test kit (memory), with the real handler apps:
access and licenses revoked, the account removed or kept for legal, the equipment child
saga (the manager's task), the final payroll, and a refusal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from handlers.hr.contracts import EmployeeLeft
from handlers.identity.handler import build_command_app as identity_commands
from handlers.identity.system import Directory
from handlers.licensing.handler import build_command_app as licensing_commands
from handlers.licensing.system import LicenseManager
from handlers.notifications.handler import build_command_app as notification_commands
from handlers.notifications.system import Mailer
from handlers.payroll.handler import build_app as payroll_app
from handlers.payroll.system import Payroll
from handlers.repositories.handler import build_app as repositories_app
from handlers.repositories.system import CodeHost
from sagas import SagaStatus
from sagas.definitions.equipment import equipment_recovery
from sagas.definitions.offboarding import LEGAL_ADDRESS, offboarding
from sagas.render import render_mermaid
from sagas.story import story
from sagas.testing import SagaTestKit

T0 = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
SAGA = "offboarding:e-1"
#: The equipment recovery, a child saga of the offboarding: the manager's task is its.
CHILD = f"equipment_recovery:{SAGA}/recover_equipment"


@dataclass
class World:
    """The simulated systems, with Ada already onboarded."""

    directory: Directory = field(default_factory=Directory)
    licenses: LicenseManager = field(default_factory=LicenseManager)
    mailer: Mailer = field(default_factory=Mailer)
    payroll: Payroll = field(default_factory=Payroll)
    host: CodeHost = field(default_factory=CodeHost)

    def __post_init__(self) -> None:
        self.directory.create_account("e-1", "Ada Lovelace")
        self.licenses.assign("ada.lovelace@example.com", "engineering")
        self.host.grant("e-1", "ada.lovelace", "engineering")
        self.payroll.create_record("e-1", "Ada Lovelace", T0.date())


def left(**kw: object) -> EmployeeLeft:
    fields: dict[str, object] = {
        "employee_id": "e-1",
        "full_name": "Ada Lovelace",
        "login": "ada.lovelace",
        "email": "ada.lovelace@example.com",
        "manager_email": "charles@example.com",
    }
    fields.update(kw)
    return EmployeeLeft.model_validate(fields)


@asynccontextmanager
async def running(world: World) -> AsyncIterator[SagaTestKit]:
    apps = [
        identity_commands(world.directory),
        licensing_commands(world.licenses),
        notification_commands(world.mailer),
        payroll_app(world.payroll),
        repositories_app(world.host),
    ]
    async with SagaTestKit(offboarding, equipment_recovery, apps=apps, start=T0) as kit:
        yield kit


async def test_a_leaver_loses_access_and_account_returns_equipment_and_is_paid_last() -> None:
    world = World()
    async with running(world) as kit:
        await kit.publish(left())
        await kit.drain()
        [task] = await kit.tasks("charles@example.com")
        assert (task.saga_id, task.step) == (CHILD, "recover_equipment")
        assert world.licenses.assigned.get("ada.lovelace@example.com") in (None, [])
        assert not world.host.grants.get("ada.lovelace")
        assert "e-1" not in world.directory.accounts
        assert "e-1" not in world.payroll.closed  # paid last, after the equipment
        await kit.complete_task(CHILD, "recover_equipment", {"items": ["laptop"]}, "charles")
        await kit.drain()
        state = await kit.state(SAGA)
        assert state.status == SagaStatus.COMPLETED
        assert state.branches == {"account": "remove"}
        assert "e-1" in world.payroll.closed
        told = story(offboarding, state)
        assert told.startswith("Ada Lovelace left: licenses ")
        assert (
            "account ada.lovelace removed; equipment back (child saga); final payroll pr-00001"
            in (told)
        )
        assert (await kit.state(CHILD)).parent_id == SAGA


async def test_a_legal_hold_keeps_the_account_and_tells_legal() -> None:
    world = World()
    async with running(world) as kit:
        await kit.publish(left(legal_hold=True))
        await kit.drain()
        await kit.complete_task(CHILD, "recover_equipment", {"items": ["laptop", "badge"]})
        await kit.drain()
        state = await kit.state(SAGA)
        assert state.status == SagaStatus.COMPLETED
        assert state.branches == {"account": "legal_hold"}
        assert "remove_account" not in {n for n, s in state.steps.items() if s.completed_at}
        assert world.directory.accounts["e-1"] == "ada.lovelace"  # kept
        assert [to for to, _ in world.mailer.sent] == [LEGAL_ADDRESS]
        assert "account kept for legal (hold)" in story(offboarding, state)


async def test_equipment_not_back_in_a_week_reminds_the_manager_and_the_task_stays_open() -> None:
    world = World()
    async with running(world) as kit:
        await kit.publish(left())
        await kit.drain()
        await kit.advance(timedelta(days=7, minutes=1))
        assert [to for to, _ in world.mailer.sent] == ["charles@example.com"]
        assert [t.status for t in await kit.tasks()] == ["overdue"]
        await kit.complete_task(CHILD, "recover_equipment", {"items": []})
        await kit.drain()
        assert await kit.status(SAGA) == SagaStatus.COMPLETED


async def test_a_refused_final_payroll_fails_the_offboarding_and_says_why() -> None:
    world = World()
    world.payroll.reject.add("e-1")
    world.payroll.reject_reasons["e-1"] = "open expense claims"
    async with running(world) as kit:
        await kit.publish(left())
        await kit.drain()
        await kit.complete_task(CHILD, "recover_equipment", {"items": ["laptop"]})
        await kit.drain()
        state = await kit.state(SAGA)
        assert state.status == SagaStatus.FAILED  # nothing to undo: nothing is compensable
        assert story(offboarding, state).endswith(
            "final payroll refused: open expense claims -> failed, nothing to undo"
        )


def test_the_diagram_draws_the_legal_hold_choice_and_the_equipment_task() -> None:
    diagram = render_mermaid(offboarding)
    for line in (
        "account --> notify_legal : account_fate = legal_hold",
        "account --> remove_account : otherwise",
        "recover_equipment : child saga equipment_recovery, awaited to its end",
        "recover_equipment --> run_final_payroll : child completed",
    ):
        assert line in diagram, diagram


def test_an_employee_left_event_of_an_older_producer_still_reads() -> None:
    old = EmployeeLeft.model_validate({"employee_id": "e-9"})
    assert (old.legal_hold, old.email) == (False, "")
