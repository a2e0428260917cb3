"""Changes mid-process: an update event changes a running saga's data; delays and held
steps are re-planned, completed steps whose rerun_on says so are undone and run again."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from pydantic import BaseModel

from bus import Command, DefinitionError, Event, Registry
from sagas import (
    Catalog,
    Compensation,
    Delay,
    Incoming,
    SagaDefinition,
    SagaStatus,
    Step,
    StepStatus,
    TimerFired,
    Transition,
    Update,
    decide,
    decide_versioned,
    render_mermaid,
    start,
)

REG = Registry()
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


class Hired(Event, type="test.upd.hired.v1", topic="t", key="who", registry=REG):
    who: str
    department: str
    start_date: date


class HireChanged(Event, type="test.upd.changed.v1", topic="t", key="who", registry=REG):
    who: str
    department: str | None = None
    start_date: date | None = None


class Open(Command, type="test.upd.open.v1", topic="t", registry=REG):
    who: str
    department: str


class Opened(Event, type="test.upd.opened.v1", topic="t", registry=REG):
    pass


class Close(Command, type="test.upd.close.v1", topic="t", registry=REG):
    who: str


class Closed(Event, type="test.upd.closed.v1", topic="t", registry=REG):
    pass


class Welcome(Command, type="test.upd.welcome.v1", topic="t", registry=REG):
    who: str


class Welcomed(Event, type="test.upd.welcomed.v1", topic="t", registry=REG):
    pass


class Hire(BaseModel):
    who: str
    department: str
    start_date: date


def change_hire(data: Hire, changed: HireChanged) -> Hire:
    return data.model_copy(update=changed.model_dump(exclude_none=True, exclude={"who"}))


def week_before_start(data: Hire, now: datetime) -> datetime:
    return datetime.combine(data.start_date, time(9), UTC) - timedelta(days=5)


def on_start_day(data: Hire, now: datetime) -> datetime:
    return datetime.combine(data.start_date, time(8), UTC)


def department_changed(old: Hire, new: Hire) -> bool:
    return old.department != new.department


OPEN = Step(
    "open",
    command=Open,
    success=Opened,
    compensation=Compensation(Close, success=Closed),
    rerun_on=department_changed,
)


def flow(*, version: int = 1, updates: bool = True) -> SagaDefinition:
    return SagaDefinition(
        name="changing",
        version=version,
        trigger=Hired,
        correlation_key="who",
        data=Hire,
        start=lambda e: Hire(who=e.who, department=e.department, start_date=e.start_date),
        stages=[
            OPEN,
            Delay("week_before", until=week_before_start),
            Step("welcome", command=Welcome, success=Welcomed, not_before=on_start_day),
        ],
        on_update=[Update(HireChanged, apply=change_hire)] if updates else [],
    )


D = flow()
HIRED = Hired(who="ada", department="sales", start_date=date(2026, 3, 20))


def feed(d: SagaDefinition, t: Transition, message: Event, mid: str, at: datetime) -> Transition:
    return decide(d, t.state, Incoming(message.bus_type, mid, t.state.saga_id, message), at)


def opened() -> Transition:
    t = start(D, HIRED, message_id="h", now=T0)
    return feed(D, t, Opened(), "r1", T0)


def test_an_update_changes_the_data_and_moves_a_waiting_delay() -> None:
    t = opened()
    [delay_timer] = t.timers_to_set
    assert delay_timer.at == datetime(2026, 3, 15, 9, 0, tzinfo=UTC)
    t = feed(D, t, HireChanged(who="ada", start_date=date(2026, 3, 27)), "u1", T0)
    assert t.state.data["start_date"] == "2026-03-27"
    assert t.timers_to_cancel == (delay_timer.id,)
    [moved] = t.timers_to_set
    assert moved.at == datetime(2026, 3, 22, 9, 0, tzinfo=UTC)
    assert t.commands == ()  # the department did not change: nothing re-runs
    lines = [(h.event, h.step) for h in t.state.history[-2:]]
    assert lines == [("updated", None), ("replanned", "week_before")]
    assert "start_date 2026-03-20 -> 2026-03-27" in t.state.history[-2].detail
    stale = decide(D, t.state, TimerFired(delay_timer.id), delay_timer.at)
    assert not stale.changed  # the old time no longer fires


def test_an_update_moves_a_held_steps_not_before() -> None:
    t = opened()
    [delay_timer] = t.timers_to_set
    t = decide(D, t.state, TimerFired(delay_timer.id), delay_timer.at)
    [held] = t.timers_to_set
    assert held.at == datetime(2026, 3, 20, 8, 0, tzinfo=UTC)
    t = feed(D, t, HireChanged(who="ada", start_date=date(2026, 3, 23)), "u1", delay_timer.at)
    [moved] = t.timers_to_set
    assert moved.at == datetime(2026, 3, 23, 8, 0, tzinfo=UTC)
    t = decide(D, t.state, TimerFired(moved.id), moved.at)
    assert [type(c.message) for c in t.commands] == [Welcome]


def test_a_start_date_moved_into_the_past_ends_the_delay_at_once() -> None:
    t = opened()
    t = feed(D, t, HireChanged(who="ada", start_date=date(2026, 3, 2)), "u1", T0)
    assert t.state.steps["week_before"].status == StepStatus.COMPLETED
    assert t.state.steps["welcome"].status == StepStatus.RUNNING  # held until Mar 2, 08:00


def test_a_change_that_invalidates_a_completed_step_compensates_it_then_runs_it_again() -> None:
    t = opened()
    t = feed(D, t, HireChanged(who="ada", department="research"), "u1", T0)
    assert [type(c.message) for c in t.commands] == [Close]
    assert t.state.steps["open"].status == StepStatus.COMPENSATING
    assert t.state.status == SagaStatus.RUNNING
    t = feed(D, t, Closed(), "c1", T0)
    [again] = t.commands
    assert again.message == Open(who="ada", department="research")
    assert (again.kind, again.attempt) == ("action", 2)
    t = feed(D, t, Opened(), "r2", T0)
    assert t.state.steps["open"].status == StepStatus.COMPLETED
    events = [h.event for h in t.state.history if h.step == "open"]
    assert events[-5:] == [
        "rerun",
        "compensation_sent",
        "compensated_for_rerun",
        "resent",  # attempt 2: a new command id
        "completed",
    ]


def test_the_saga_does_not_go_on_while_a_rerun_is_in_flight() -> None:
    t = opened()
    [delay_timer] = t.timers_to_set
    t = feed(D, t, HireChanged(who="ada", department="research"), "u1", T0)
    t = decide(D, t.state, TimerFired(delay_timer.id), delay_timer.at)  # the delay ends
    assert t.commands == ()  # welcome waits for the re-run
    t = feed(D, t, Closed(), "c1", delay_timer.at)
    t = feed(D, t, Opened(), "r2", delay_timer.at)
    assert t.state.steps["welcome"].status == StepStatus.RUNNING


def test_a_failure_after_a_rerun_undoes_the_rerun_once() -> None:
    t = opened()
    t = feed(D, t, HireChanged(who="ada", department="research"), "u1", T0)
    t = feed(D, t, Closed(), "c1", T0)
    t = feed(D, t, Opened(), "r2", T0)
    from sagas import Cancel

    t = decide(D, t.state, Cancel(), T0)
    [undo] = t.commands
    assert (type(undo.message), undo.attempt) == (Close, 2)
    t = feed(D, t, Closed(), "c2", T0)
    assert t.state.status == SagaStatus.CANCELLED


def test_the_same_update_twice_and_an_update_after_the_end_change_nothing() -> None:
    t = opened()
    change = HireChanged(who="ada", start_date=date(2026, 3, 27))
    t = feed(D, t, change, "u1", T0)
    assert not feed(D, t, change, "u1", T0).changed
    from sagas import Cancel

    t = decide(D, t.state, Cancel(), T0)
    assert not feed(D, t, change, "u2", T0).changed  # compensating: too late to adapt


def test_an_instance_on_a_version_without_updates_ignores_them() -> None:
    v1, v2 = flow(version=1, updates=False), flow(version=2)
    catalog = Catalog([v1, v2])
    t = start(v1, HIRED, message_id="h", now=T0)
    change = HireChanged(who="ada", department="research")
    incoming = Incoming(change.bus_type, "u1", t.state.saga_id, change)
    assert not decide_versioned(catalog, t.state, incoming, T0).changed
    t2 = start(v2, HIRED, message_id="h", now=T0)
    assert decide_versioned(catalog, t2.state, incoming, T0).changed


def test_update_events_are_consumed_and_drawn() -> None:
    assert HireChanged in D.consumed_types()
    diagram = render_mermaid(D)
    assert "HireChanged while running: change_hire changes the data" in diagram
    assert "open : re-run (undone, sent again) on department_changed" in diagram


def test_an_update_needs_a_named_function_and_the_correlation_key() -> None:
    class Loose(Event, type="test.upd.loose.v1", topic="t", registry=REG):
        department: str

    with pytest.raises(DefinitionError) as e:
        SagaDefinition(
            name="bad",
            version=1,
            trigger=Hired,
            correlation_key="who",
            data=Hire,
            start=lambda e: Hire(who=e.who, department=e.department, start_date=e.start_date),
            stages=[OPEN],
            on_update=[Update(Loose, apply=lambda d, e: d)],
        )
    text = "\n".join(e.value.problems)
    assert "on_update apply: use a named function" in text
    assert "Loose has no field 'who' (the correlation key)" in text
