"""Task stages in the pure core: a row opened when reached, completed by a form, overdue
and escalated once, cancelled with the saga, compensated when completed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import BaseModel

from bus import Command, DefinitionError, Event, Registry
from sagas import (
    Cancel,
    Compensation,
    Incoming,
    SagaDefinition,
    SagaStatus,
    Step,
    StepStatus,
    Task,
    TaskDone,
    TimerFired,
    Transition,
    decide,
    render_mermaid,
    start,
)
from sagas.effects import task_id

REG = Registry()
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
SAGA = "desk:ada"


class Hired(Event, type="test.task.hired.v1", topic="t", key="who", registry=REG):
    who: str
    manager: str


class DeskAssigned(Event, type="test.task.desk_assigned.v1", topic="t", registry=REG):
    desk: str
    floor: int


class NotifyOverdue(Command, type="test.task.notify_overdue.v1", topic="t", registry=REG):
    who: str


class FreeDesk(Command, type="test.task.free_desk.v1", topic="t", registry=REG):
    who: str


class DeskFreed(Event, type="test.task.desk_freed.v1", topic="t", registry=REG):
    pass


class Badge(Command, type="test.task.badge.v1", topic="t", registry=REG):
    who: str


class Badged(Event, type="test.task.badged.v1", topic="t", registry=REG):
    pass


class BadgeFailed(Event, type="test.task.badge_failed.v1", topic="t", registry=REG):
    pass


class Hire(BaseModel):
    who: str
    manager: str
    desk: str | None = None


def remember_desk(data: Hire, form: DeskAssigned) -> Hire:
    return data.model_copy(update={"desk": form.desk})


def manager_of(data: Hire) -> str:
    return data.manager


FLOW = SagaDefinition(
    name="desk",
    version=1,
    trigger=Hired,
    correlation_key="who",
    data=Hire,
    start=lambda e: Hire(who=e.who, manager=e.manager),
    stages=[
        Task(
            "assign_desk",
            assignee=manager_of,
            form=DeskAssigned,
            deadline=timedelta(days=2),
            escalate=NotifyOverdue,
            update=remember_desk,
            compensation=Compensation(FreeDesk, success=DeskFreed),
        ),
        Step("badge", command=Badge, success=Badged, failure=BadgeFailed),
    ],
)
TASK = task_id(SAGA, "assign_desk")


def begin() -> Transition:
    return start(FLOW, Hired(who="ada", manager="bo@example.com"), message_id="m-1", now=T0)


def done(data: dict[str, object] | None = None) -> TaskDone:
    return TaskDone(TASK, "assign_desk", data or {"desk": "B-204", "floor": 2}, "bo@example.com")


def test_reaching_a_task_opens_its_row_for_the_assignee_with_a_due_timer() -> None:
    t = begin()
    [row] = t.tasks_to_open
    assert (row.id, row.saga_id, row.step, row.assignee) == (
        TASK,
        SAGA,
        "assign_desk",
        "bo@example.com",
    )
    assert row.form == DeskAssigned.bus_type
    assert row.form_path.endswith(":DeskAssigned")
    assert row.due_at == T0 + timedelta(days=2)
    assert [x.at for x in t.timers_to_set] == [row.due_at]
    assert t.state.steps["assign_desk"].status == StepStatus.RUNNING
    assert t.commands == ()


def test_a_completion_updates_the_data_and_the_saga_goes_on() -> None:
    t = decide(FLOW, begin().state, done(), T0 + timedelta(hours=1))
    assert t.state.steps["assign_desk"].status == StepStatus.COMPLETED
    assert t.state.data["desk"] == "B-204"
    assert [c.message.bus_type for c in t.commands] == [Badge.bus_type]
    assert any(h.event == "completed" and "by bo@example.com" in h.detail for h in t.state.history)
    assert t.timers_to_cancel  # the due timer is no longer wanted


def test_a_second_completion_changes_nothing() -> None:
    t = decide(FLOW, begin().state, done(), T0 + timedelta(hours=1))
    again = decide(FLOW, t.state, done({"desk": "C-1", "floor": 3}), T0 + timedelta(hours=2))
    assert not again.changed
    assert again.state.data["desk"] == "B-204"


def test_a_completion_before_the_task_is_reached_changes_nothing() -> None:
    flow = SagaDefinition(
        name="desk", version=1, trigger=Hired, correlation_key="who", data=Hire,
        start=lambda e: Hire(who=e.who, manager=e.manager),
        stages=[Step("badge", command=Badge, success=Badged), *FLOW.stages[:1]],
    )  # fmt: skip
    t = start(flow, Hired(who="ada", manager="bo"), message_id="m-1", now=T0)
    assert t.tasks_to_open == ()
    assert not decide(flow, t.state, done(), T0).changed


def test_past_its_due_time_a_task_is_overdue_escalated_once_and_still_open() -> None:
    t = begin()
    [timer] = t.timers_to_set
    due = decide(FLOW, t.state, TimerFired(timer.id), timer.at)
    assert [(m.id, m.status) for m in due.tasks_to_mark] == [(TASK, "overdue")]
    assert [c.message.bus_type for c in due.commands] == [NotifyOverdue.bus_type]
    assert due.commands[0].kind == "escalation"
    assert due.state.steps["assign_desk"].status == StepStatus.RUNNING
    assert not decide(FLOW, due.state, TimerFired(timer.id), timer.at).changed
    late = decide(FLOW, due.state, done(), timer.at + timedelta(hours=1))
    assert late.state.steps["assign_desk"].status == StepStatus.COMPLETED


def test_a_cancel_while_the_task_is_open_cancels_its_row() -> None:
    t = decide(FLOW, begin().state, Cancel("hire withdrawn"), T0 + timedelta(hours=1))
    assert t.state.status == SagaStatus.CANCELLED
    assert [(m.id, m.status) for m in t.tasks_to_mark] == [(TASK, "cancelled")]
    assert t.state.steps["assign_desk"].status == StepStatus.ABANDONED
    assert not decide(FLOW, t.state, done(), T0 + timedelta(hours=2)).changed


def test_a_completed_task_is_compensated_by_its_command_when_a_later_step_fails() -> None:
    t = decide(FLOW, begin().state, done(), T0 + timedelta(hours=1))
    [badge] = t.commands
    failed = Incoming(BadgeFailed.bus_type, "r-1", SAGA, BadgeFailed(), causation_id=badge.id)
    t = decide(FLOW, t.state, failed, T0 + timedelta(hours=2))
    assert [(c.kind, c.message.bus_type) for c in t.commands] == [
        ("compensation", FreeDesk.bus_type)
    ]
    freed = Incoming(DeskFreed.bus_type, "r-2", SAGA, DeskFreed(), causation_id=t.commands[0].id)
    t = decide(FLOW, t.state, freed, T0 + timedelta(hours=3))
    assert t.state.status == SagaStatus.COMPENSATED


def test_data_not_valid_for_the_form_is_refused_in_the_timeline() -> None:
    t = decide(FLOW, begin().state, done({"desk": "B-204", "floor": "high"}), T0)
    assert t.state.steps["assign_desk"].status == StepStatus.RUNNING
    assert t.state.history[-1].event == "task_refused"


def test_a_task_with_a_bad_form_or_deadline_is_refused_when_defined() -> None:
    with pytest.raises(DefinitionError) as caught:
        SagaDefinition(
            name="bad", version=1, trigger=Hired, correlation_key="who", data=Hire,
            start=lambda e: Hire(who=e.who, manager=e.manager),
            stages=[Task("t", assignee="x", form=int, deadline=timedelta(0))],
        )  # fmt: skip
    assert "form= must be a pydantic model" in str(caught.value)
    assert "deadline must be positive" in str(caught.value)


def test_the_diagram_draws_the_task_its_form_and_its_undo() -> None:
    diagram = render_mermaid(FLOW)
    assert "assign_desk : task for manager_of: form DeskAssigned" in diagram
    assert "assign_desk : overdue after 2d, sends NotifyOverdue" in diagram
    assert "assign_desk --> badge : DeskAssigned submitted" in diagram
    assert "undo_assign_desk : FreeDesk" in diagram
