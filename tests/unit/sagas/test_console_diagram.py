"""The saga page's diagram: every step drawn, the current one highlighted, statuses and
branches marked, each kind of stage with a shape of its own (pure SVG, no script)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from xml.etree import ElementTree

from sagas import SagaDefinition, SagaState, SagaStatus, StepStatus, start
from sagas.definitions.onboarding import EmployeeHired, onboarding
from sagas.web.diagram import saga_svg
from tests.unit.sagas import test_choice, test_sub_sagas, test_tasks, test_time_from_data

T0 = datetime(2026, 3, 1, tzinfo=UTC)
SVG = "{http://www.w3.org/2000/svg}"


def _groups(svg: str) -> dict[str, set[str]]:
    """Step name -> the classes of its group (the SVG parses as XML)."""
    root = ElementTree.fromstring(svg)
    return {
        g.attrib["id"].removeprefix("step-"): set(g.attrib["class"].split())
        for g in root.iter(f"{SVG}g")
        if g.attrib.get("id", "").startswith("step-")
    }


def _onboarding_started() -> SagaState:
    hired = EmployeeHired(
        employee_id="e-7", full_name="Grace Hopper", department="engineering",
        manager_email="howard@example.com", role="admin", start_date="2027-01-04",
    )  # fmt: skip
    return start(onboarding, hired, message_id="m-1", now=T0).state


def test_every_step_appears_and_only_the_current_one_is_highlighted() -> None:
    state = _onboarding_started()
    groups = _groups(saga_svg(onboarding, state))
    assert set(groups) == {s.name for s in onboarding.iter_steps()}
    current = [name for name, css in groups.items() if "current" in css]
    running = [n for n, st in state.steps.items() if st.status == StepStatus.RUNNING]
    assert current == running
    assert running  # a started saga has a step in flight


def test_statuses_are_classes_and_a_group_is_drawn_side_by_side() -> None:
    state = _onboarding_started()
    state.steps["create_account"].status = StepStatus.COMPLETED
    state.steps["assign_licenses"].status = StepStatus.COMPENSATED
    state.steps["grant_repository_access"].status = StepStatus.FAILED
    svg = saga_svg(onboarding, state)
    groups = _groups(svg)
    assert "status-completed" in groups["create_account"]
    assert "status-compensated" in groups["assign_licenses"]
    assert "status-failed" in groups["grant_repository_access"]
    assert "kind-wait" in groups["manager_approval"]
    ys = {
        name: re.search(rf'id="step-{name}".*?<rect x="(\d+)" y="(\d+)"', svg, re.S)
        for name in ("assign_licenses", "grant_repository_access")
    }
    (a, b) = (m.groups() for m in ys.values() if m is not None)
    assert a[1] == b[1]  # same row
    assert a[0] != b[0]  # side by side
    assert "<script" not in svg
    assert "style=" not in svg  # the CSP allows no inline styles


def test_a_choice_draws_every_branch_and_marks_the_one_taken() -> None:
    flow: SagaDefinition = test_choice.FLOW
    state = test_choice._begin("de").state
    state.branches["payroll"] = "de"
    svg = saga_svg(flow, state)
    assert set(_groups(svg)) == {s.name for s in flow.iter_steps()}
    root = ElementTree.fromstring(svg)
    branches = {
        g.attrib["id"]: g.attrib["class"].split()
        for g in root.iter(f"{SVG}g")
        if g.attrib.get("id", "").startswith("branch-")
    }
    assert branches["branch-payroll-de"] == ["branch", "taken"]
    assert branches["branch-payroll-us"] == ["branch"]
    assert branches["branch-payroll-default"] == ["branch"]
    assert "de (taken)" in svg


def test_delays_tasks_and_child_sagas_have_kinds_of_their_own() -> None:
    cases = [
        (test_time_from_data.FLOW, "week_before", "kind-delay", "delay until"),
        (test_tasks.FLOW, "assign_desk", "kind-task", "task: form DeskAssigned"),
        (test_sub_sagas.PARENT, "equipment", "kind-child", "child saga"),
    ]
    for flow, step, kind, label in cases:
        state = SagaState(saga_id="s", name=flow.name, version=flow.version,
                          status=SagaStatus.RUNNING, data={}, steps={}, trigger_id="m",
                          started_at=T0, updated_at=T0)  # fmt: skip
        svg = saga_svg(flow, state)
        assert kind in _groups(svg)[step], step
        assert label in svg, step


def test_an_ended_saga_marks_its_end() -> None:
    state = _onboarding_started()
    state.status = SagaStatus.COMPENSATED
    svg = saga_svg(onboarding, state)
    end = re.search(r'<g class="end current">.*?<text[^>]*>([^<]+)</text>', svg)
    assert end is not None
    assert end.group(1) == "compensated"
