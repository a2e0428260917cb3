"""The equipment child sagas on their own: a task for IT (issue) or the manager (recovery)."""

from __future__ import annotations

from datetime import timedelta

from handlers.hr.contracts import EquipmentRecoveryRequested, EquipmentRequested
from sagas import SagaStatus
from sagas.definitions.equipment import IT_DESK, equipment_issue, equipment_recovery
from sagas.testing import SagaTestKit


async def test_it_issues_a_new_hires_equipment_by_completing_its_task() -> None:
    async with SagaTestKit(equipment_issue) as kit:
        await kit.publish(EquipmentRequested(employee_id="e-1", full_name="Ada"))
        await kit.drain()
        assert [t.step for t in await kit.tasks(IT_DESK)] == ["issue_equipment"]
        await kit.complete_task("equipment_issue:e-1", "issue_equipment", {"items": ["laptop"]})
        await kit.drain()
        state = await kit.state("equipment_issue:e-1")
    assert state.status == SagaStatus.COMPLETED
    assert state.data["items"] == ["laptop"]


async def test_equipment_not_back_in_a_week_reminds_the_manager_once() -> None:
    async with SagaTestKit(equipment_recovery) as kit:
        left = EquipmentRecoveryRequested(employee_id="e-1", manager_email="bo@example.com")
        await kit.publish(left)
        await kit.drain()
        await kit.advance(timedelta(days=8))
        [reminder] = kit.commands()
        assert reminder.manager_email == "bo@example.com"
        assert [t.status for t in await kit.tasks("bo@example.com")] == ["overdue"]
        await kit.complete_task("equipment_recovery:e-1", "recover_equipment", {"items": []})
        await kit.drain()
        assert await kit.status("equipment_recovery:e-1") == SagaStatus.COMPLETED
