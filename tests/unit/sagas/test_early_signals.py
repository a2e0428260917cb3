"""An event for a Wait that arrives before the saga reaches the wait is kept and applied."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from bus import Command, Event, Registry
from sagas import (
    Cancel,
    Compensation,
    Incoming,
    SagaDefinition,
    SagaState,
    SagaStatus,
    Step,
    StepStatus,
    Wait,
    decide,
    start,
)

REG = Registry()
T0 = datetime(2026, 3, 1, tzinfo=UTC)


class Hired(Event, type="test.early.hired.v1", topic="t", key="who", registry=REG):
    who: str


class Open(Command, type="test.early.open.v1", topic="t", registry=REG):
    who: str


class Opened(Event, type="test.early.opened.v1", topic="t", registry=REG):
    pass


class Close(Command, type="test.early.close.v1", topic="t", registry=REG):
    who: str


class Closed(Event, type="test.early.closed.v1", topic="t", registry=REG):
    pass


class Approved(Event, type="test.early.approved.v1", topic="t", key="who", registry=REG):
    who: str
    by: str = ""


class Rejected(Event, type="test.early.rejected.v1", topic="t", key="who", registry=REG):
    who: str


class Hire(BaseModel):
    who: str
    approver: str = ""


def remember_approver(data: Hire, event: Approved) -> Hire:
    return data.model_copy(update={"approver": event.by})


FLOW = SagaDefinition(
    name="early",
    version=1,
    trigger=Hired,
    correlation_key="who",
    data=Hire,
    start=lambda e: Hire(who=e.who),
    stages=[
        Step(
            "open",
            command=Open,
            success=Opened,
            compensation=Compensation(Close, success=Closed),
        ),
        Wait(
            "approval",
            event=Approved,
            rejected=Rejected,
            deadline=timedelta(days=1),
            update=remember_approver,
        ),
    ],
)
SAGA = "early:ada"


def _event(message: Event, message_id: str) -> Incoming:
    return Incoming(message.bus_type, message_id, SAGA, message)


def _started() -> SagaState:
    return start(FLOW, Hired(who="ada"), message_id="t-1", now=T0).state


def test_an_approval_before_the_wait_starts_is_kept_and_then_completes_the_wait() -> None:
    s = _started()
    t = decide(FLOW, s, _event(Approved(who="ada", by="grace"), "a-1"), T0)
    assert t.changed
    assert not t.commands
    assert [e.message_id for e in t.state.early] == ["a-1"]
    assert t.state.steps["approval"].status == StepStatus.PENDING
    t = decide(FLOW, t.state, _event(Opened(), "r-1"), T0 + timedelta(seconds=1))
    assert t.state.status == SagaStatus.COMPLETED
    assert t.state.steps["approval"].reply_ids == ["a-1"]
    assert t.state.data["approver"] == "grace"
    assert t.state.early == []
    assert not t.timers_to_set  # applied at once: no deadline armed
    events = [h.event for h in t.state.history]
    assert events.index("kept_early") < events.index("applied_early")


def test_an_early_rejection_fails_the_wait_when_it_starts_and_compensates() -> None:
    s = decide(FLOW, _started(), _event(Rejected(who="ada"), "x-1"), T0).state
    t = decide(FLOW, s, _event(Opened(), "r-1"), T0)
    assert t.state.status == SagaStatus.COMPENSATING
    assert [c.message for c in t.commands] == [Close(who="ada")]


def test_the_same_early_event_twice_is_kept_once() -> None:
    s = decide(FLOW, _started(), _event(Approved(who="ada"), "a-1"), T0).state
    again = decide(FLOW, s, _event(Approved(who="ada"), "a-1"), T0)
    assert not again.changed
    assert again.state is s


def test_a_second_early_event_is_superseded_by_the_first_and_said_so() -> None:
    s = decide(FLOW, _started(), _event(Approved(who="ada"), "a-1"), T0).state
    s = decide(FLOW, s, _event(Rejected(who="ada"), "x-1"), T0).state
    assert len(s.early) == 2
    t = decide(FLOW, s, _event(Opened(), "r-1"), T0)
    assert t.state.status == SagaStatus.COMPLETED
    assert ("superseded", "approval") in [(h.event, h.step) for h in t.state.history]


def test_kept_signals_survive_the_stored_json() -> None:
    s = decide(FLOW, _started(), _event(Approved(who="ada", by="g"), "a-1"), T0).state
    back = SagaState.from_json(s.to_json())
    assert back == s
    t = decide(FLOW, back, _event(Opened(), "r-1"), T0)
    assert t.state.data["approver"] == "g"


def test_an_event_for_a_wait_of_a_saga_no_longer_running_is_not_kept() -> None:
    s = decide(FLOW, _started(), Cancel(), T0).state
    t = decide(FLOW, s, _event(Approved(who="ada"), "a-1"), T0)
    assert not t.changed


def test_a_state_stored_before_early_signals_existed_still_reads() -> None:
    raw = _started().to_dict()
    del raw["early"]
    assert SagaState.from_dict(raw).early == []


@settings(max_examples=200, deadline=None)
@given(
    order=st.permutations(["reply", "a-1", "a-2", "x-1"]),
    dups=st.lists(st.sampled_from(["reply", "a-1", "a-2", "x-1"]), max_size=4),
    stored=st.booleans(),
)
def test_the_first_approval_or_rejection_settles_the_wait_whatever_the_order(
    order: list[str], dups: list[str], stored: bool
) -> None:
    """Replies, approvals and rejections in any order, some again: the wait is settled by
    the first of its events to arrive (kept if early), exactly once, and never lost."""
    events = {
        "reply": _event(Opened(), "r-1"),
        "a-1": _event(Approved(who="ada", by="first"), "a-1"),
        "a-2": _event(Approved(who="ada", by="second"), "a-2"),
        "x-1": _event(Rejected(who="ada"), "x-1"),
    }
    s = _started()
    for name in [*order, *dups]:
        s = decide(FLOW, s, events[name], T0).state
        if stored:  # through the stores' JSON, as a coordinator restart would read it
            s = SagaState.from_json(s.to_json())
    first = next(n for n in order if n != "reply")
    assert s.steps["approval"].reply_ids == [first]
    assert s.early == []
    if first == "x-1":
        assert s.status == SagaStatus.COMPENSATING  # rejected: the account is undone
    else:
        assert s.status == SagaStatus.COMPLETED
        assert s.data["approver"] == {"a-1": "first", "a-2": "second"}[first]
