"""Delay stages and not_before steps wait until a time computed from the data and now."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from bus import Command, ConfigError, Event, Registry
from sagas import (
    Cancel,
    Catalog,
    Delay,
    Incoming,
    Retry,
    SagaDefinition,
    SagaState,
    SagaStatus,
    Step,
    StepStatus,
    TimerFired,
    Transition,
    decide,
    decide_versioned,
    render_mermaid,
    start,
)
from tests.unit.sagas.hiring import (
    T0,
    Close,
    Hire,
    Open,
    Opened,
    hired,
    hiring_flow,
    open_account,
)

# this module's own messages: pytest and test_console_diagram.py may import it twice
REG = Registry()


class Welcome(Command, type="test.time.welcome.v1", topic="t", registry=REG):
    who: str


class Welcomed(Event, type="test.time.welcomed.v1", topic="t", registry=REG):
    pass


def week_before_start(data: Hire, now: datetime) -> datetime:
    return datetime.combine(data.start_date, time(9), UTC) - timedelta(days=5)


def on_start_day(data: Hire, now: datetime) -> datetime:
    return datetime.combine(data.start_date, time(8), UTC)


def flow(version: int = 2) -> SagaDefinition:
    return hiring_flow(
        "timed",
        version,
        [
            Delay("week_before", until=week_before_start),
            open_account(),
            Step("welcome", command=Welcome, success=Welcomed, not_before=on_start_day),
        ],
    )


FLOW = flow()
SAGA = "timed:ada"


def _begin(start_date: date) -> Transition:
    return start(FLOW, hired(start_date), message_id="h", now=T0)


def _reply(t: Transition, cls: type[Event], message_id: str, at: datetime) -> Transition:
    return decide(FLOW, t.state, Incoming(cls.bus_type, message_id, SAGA, cls()), at)


def test_a_delay_holds_the_saga_until_the_time_computed_from_the_data() -> None:
    t = _begin(date(2026, 3, 20))
    assert not t.commands
    (timer,) = t.timers_to_set
    assert timer.at == datetime(2026, 3, 15, 9, 0, tzinfo=UTC)
    assert t.state.steps["week_before"].status == StepStatus.RUNNING
    t = decide(FLOW, t.state, TimerFired(timer.id), timer.at)
    assert [c.step for c in t.commands] == ["open"]
    assert t.state.steps["week_before"].status == StepStatus.COMPLETED


def test_a_time_already_past_goes_on_at_once() -> None:
    t = _begin(date(2026, 3, 2))
    assert [c.step for c in t.commands] == ["open"]
    assert "the time had passed" in t.state.history[2].detail


def test_a_step_is_held_until_its_not_before_then_sent() -> None:
    t = _begin(date(2026, 3, 2))
    t = _reply(t, Opened, "r-1", T0)
    assert not t.commands
    held = t.state.steps["welcome"]
    assert (held.status, held.attempts) == (StepStatus.RUNNING, 0)
    (timer,) = t.timers_to_set
    assert timer.at == datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    early = _reply(t, Welcomed, "r-x", T0)  # nothing was sent: a reply is not awaited yet
    assert not early.changed
    t = decide(FLOW, t.state, TimerFired(timer.id), timer.at)
    assert [c.step for c in t.commands] == ["welcome"]
    t = _reply(t, Welcomed, "r-2", timer.at)
    assert t.state.status == SagaStatus.COMPLETED


def test_a_cancel_stops_a_delay_and_a_held_step_and_undoes_what_completed() -> None:
    t = _begin(date(2026, 3, 20))
    t = decide(FLOW, t.state, Cancel(), T0)
    assert t.state.status == SagaStatus.CANCELLED
    assert t.state.steps["week_before"].status == StepStatus.ABANDONED
    assert t.timers_to_cancel
    t = _reply(_begin(date(2026, 3, 2)), Opened, "r-1", T0)
    t = decide(FLOW, t.state, Cancel(), T0)
    assert t.state.steps["welcome"].status == StepStatus.ABANDONED
    assert [c.message for c in t.commands] == [Close(who="ada")]


def test_a_held_delay_and_step_survive_the_stored_json() -> None:
    s = _begin(date(2026, 3, 20)).state
    assert SagaState.from_json(s.to_json()) == s


def test_a_parked_delay_is_armed_again_by_a_retry() -> None:
    t = _begin(date(2026, 3, 20))
    parked = decide_versioned(Catalog([flow(3)]), t.state, TimerFired("x"), T0)
    assert parked.state.status == SagaStatus.NEEDS_ATTENTION
    t = decide_versioned(Catalog([FLOW]), parked.state, Retry(), T0)
    (timer,) = t.timers_to_set
    assert timer.at == datetime(2026, 3, 15, 9, 0, tzinfo=UTC)
    t = decide(FLOW, t.state, TimerFired(timer.id), timer.at)
    assert [c.step for c in t.commands] == ["open"]


def test_an_instance_started_before_the_delay_existed_finishes_on_its_version() -> None:
    v1 = hiring_flow("timed", 1, [Step("open", command=Open, success=Opened)])
    old = start(v1, hired(date(2026, 3, 20)), message_id="h", now=T0)
    assert [c.step for c in old.commands] == ["open"]  # v1: no delay
    reply = Incoming(Opened.bus_type, "r-1", SAGA, Opened())
    t = decide_versioned(Catalog([v1, FLOW]), old.state, reply, T0)
    assert t.state.status == SagaStatus.COMPLETED


def test_a_naive_time_is_a_config_error_naming_the_function() -> None:
    def naive(data: Hire, now: datetime) -> datetime:
        return datetime(2026, 3, 20)

    d = hiring_flow("naive", 1, [Delay("wait", until=naive)])
    with pytest.raises(ConfigError, match="naive"):
        start(d, hired(date(2026, 3, 20), who="a"), message_id="h", now=T0)


def test_the_diagram_shows_delays_and_held_steps() -> None:
    text = render_mermaid(FLOW)
    assert "week_before : wait until week_before_start" in text
    assert "week_before --> open : time reached" in text
    assert "welcome : not before on_start_day" in text
