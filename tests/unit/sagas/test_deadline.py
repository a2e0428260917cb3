"""A saga's deadline: late flag, escalation, compensation only where the definition says so."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from bus import Command, DefinitionError, Metrics, Registry
from sagas import (
    Catalog,
    Deadline,
    Incoming,
    SagaDefinition,
    SagaState,
    SagaStatus,
    Step,
    TimerFired,
    Transition,
    decide,
    decide_versioned,
    start,
)
from sagas.metrics import SagaMetrics
from sagas.observer import report_change
from tests.unit.sagas.hiring import (
    T0,
    Close,
    Closed,
    Hire,
    Open,
    Opened,
    hired,
    hiring_flow,
    open_account,
)

# this module's own messages: pytest and test_console_diagram.py may import it twice
REG = Registry()


class Escalate(Command, type="test.late.escalate.v1", topic="t", registry=REG):
    who: str
    start_date: date


def start_morning(data: Hire, now: datetime) -> datetime:
    return datetime.combine(data.start_date, time(9), UTC)


def flow(*, compensate: bool = False, version: int = 2) -> SagaDefinition:
    return hiring_flow(
        "late",
        version,
        [open_account(timeout=timedelta(days=30))],
        deadline=Deadline(at=start_morning, escalate=Escalate, compensate=compensate),
    )


FLOW = flow()
SAGA = "late:ada"
DUE = datetime(2026, 3, 3, 9, 0, tzinfo=UTC)


def _begin(d: SagaDefinition = FLOW) -> Transition:
    return start(d, hired(date(2026, 3, 3)), message_id="h", now=T0)


def _deadline(t: Transition) -> str:
    timer = t.state.deadline_timer
    assert timer is not None
    return timer


def test_the_deadline_is_set_from_the_data_when_the_saga_starts() -> None:
    t = _begin()
    assert t.state.deadline_at == DUE
    assert any(x.id == _deadline(t) and x.at == DUE for x in t.timers_to_set)
    assert not t.state.late


def test_a_saga_that_ends_in_time_cancels_its_deadline() -> None:
    t = _begin()
    timer = _deadline(t)
    t = decide(FLOW, t.state, Incoming(Opened.bus_type, "r", SAGA, Opened()), T0)
    assert t.state.status == SagaStatus.COMPLETED
    assert timer in t.timers_to_cancel
    assert t.state.deadline_timer is None
    again = decide(FLOW, t.state, TimerFired(timer), DUE)
    assert not again.changed


def test_late_escalates_once_and_goes_on_unless_told_to_compensate() -> None:
    t = _begin()
    t = decide(FLOW, t.state, TimerFired(_deadline(t)), DUE)
    assert t.state.late
    assert t.state.status == SagaStatus.RUNNING
    assert [c.message for c in t.commands] == [Escalate(who="ada", start_date=date(2026, 3, 3))]
    assert t.commands[0].kind == "escalation"
    assert [h.event for h in t.state.history[-2:]] == ["late", "escalated"]
    t = decide(FLOW, t.state, Incoming(Opened.bus_type, "r", SAGA, Opened()), DUE)
    assert t.state.status == SagaStatus.COMPLETED
    assert t.state.late  # it stays true: it was late
    assert SagaState.from_json(t.state.to_json()) == t.state


def test_compensate_true_undoes_what_completed_when_late() -> None:
    d = flow(compensate=True)
    t = _begin(d)
    t = decide(d, t.state, TimerFired(_deadline(t)), DUE)
    # the step in flight settles first: its timeout (30 days) or its reply
    assert t.state.status == SagaStatus.COMPENSATING
    assert t.state.cause == "deadline"
    t = decide(d, t.state, Incoming(Opened.bus_type, "r", SAGA, Opened()), DUE)
    assert [c.message for c in t.commands] == [Close(who="ada")]
    t = decide(d, t.state, Incoming(Closed.bus_type, "c", SAGA, Closed()), DUE)
    assert t.state.status == SagaStatus.COMPENSATED


def test_a_parked_saga_is_marked_late_but_stays_parked() -> None:
    t = _begin()
    parked = decide_versioned(Catalog([flow(version=3)]), t.state, TimerFired("x"), T0)
    assert parked.state.status == SagaStatus.NEEDS_ATTENTION
    # its version is back; the deadline fires before the operator's retry
    t = decide(FLOW, parked.state, TimerFired(_deadline(t)), DUE)
    assert t.state.late
    assert t.state.status == SagaStatus.NEEDS_ATTENTION


def test_late_is_counted_in_the_metrics() -> None:
    metrics = Metrics()
    t = _begin()
    after = decide(FLOW, t.state, TimerFired(_deadline(t)), DUE).state
    report_change(SagaMetrics(metrics), t.state, after, timer=True)
    assert metrics.sample("bus_sagas_late_total", {"saga": "late"}) == 1


def test_an_instance_started_without_a_deadline_is_never_late() -> None:
    v1 = hiring_flow("late", 1, [Step("open", command=Open, success=Opened)])
    old = start(v1, hired(date(2026, 3, 3)), message_id="h", now=T0)
    assert old.state.deadline_timer is None
    assert len(old.timers_to_set) == 1  # the reply timeout only
    t = decide_versioned(
        Catalog([v1, FLOW]), old.state, TimerFired("late:ada/_saga/deadline/1"), DUE
    )
    assert not t.changed


def test_a_bad_deadline_is_reported_with_the_other_problems() -> None:
    with pytest.raises(DefinitionError) as err:
        hiring_flow(
            "bad",
            1,
            [Step("open", command=Open, success=Opened)],
            deadline=Deadline(at=lambda d, now: now, escalate=Opened),  # type: ignore[arg-type]
        )
    text = str(err.value.problems)
    assert "deadline at: use a named function" in text
    assert "deadline escalate" in text


def test_the_diagram_notes_the_deadline() -> None:
    from sagas import render_mermaid

    assert "late after start_morning: sends Escalate, goes on" in render_mermaid(FLOW)
