"""The demo's scenario file: hires, leavers and the people's parts, suffixed for a run."""

from __future__ import annotations

from sagas import SagaStatus
from sagas.demo_scenario import DEFAULT_SCENARIO, load_scenario


def test_the_default_scenario_has_every_kind_of_hire_and_leaver() -> None:
    scenario = load_scenario(DEFAULT_SCENARIO)
    kinds = {h.employment_type for h in scenario.hires}
    assert kinds == {"employee", "contractor"}
    assert scenario.early_approvals
    assert scenario.approvals
    assert {p.legal_hold for p in scenario.leavers} == {True, False}
    assert set(scenario.equipment) == {p.employee_id for p in scenario.leavers}
    expected = {
        h.employee_id: scenario.expected(f"onboarding:{h.employee_id}") for h in scenario.hires
    }
    assert sorted(expected.values()).count(SagaStatus.COMPLETED) == 5
    assert scenario.moves
    assert scenario.expected("offboarding:e-1001") == SagaStatus.COMPLETED


def test_a_suffix_renames_every_employee_id_of_the_scenario() -> None:
    scenario = load_scenario(DEFAULT_SCENARIO).with_suffix("-r1")
    ids = {h.employee_id for h in scenario.hires} | {p.employee_id for p in scenario.leavers}
    assert all(i.endswith("-r1") for i in ids)
    for by_id in (scenario.desks, scenario.equipment, scenario.early_approvals, scenario.moves):
        assert set(by_id) <= ids
    assert scenario.expected("onboarding:e-2003-r1") == SagaStatus.COMPENSATED
