"""An event that came before its saga existed is kept (a KeepEarly write) and applied when
the saga starts, in arrival order, before its first stage: a cancel stops it before anything
is sent, an update changes the data its first stage reads, an approval is kept for its
wait. Duplicates are kept once; the property: an early signal is never lost."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from bus import Event
from sagas import Catalog, Incoming, SagaDefinition, SagaState, SagaStatus, StepStatus, Update
from sagas.early import EarlyInput, early_input
from sagas.operations import DecideSaga, StartSaga, apply_input
from sagas.stores.base import KeepEarly, SagaWrite, StoredSaga, Unstarted
from sagas.timeline import format_timeline
from tests.unit.sagas.test_early_signals import (
    FLOW,
    REG,
    SAGA,
    T0,
    Approved,
    Hire,
    Hired,
    Opened,
    Rejected,
)


class Withdrawn(Event, type="test.early.withdrawn.v1", topic="t", key="who", registry=REG):
    who: str


class Renamed(Event, type="test.early.renamed.v1", topic="t", key="who", registry=REG):
    who: str
    approver: str


def rename(data: Hire, e: Renamed) -> Hire:
    return data.model_copy(update={"approver": e.approver})


ADAPTING = SagaDefinition(
    name=FLOW.name,
    version=2,
    trigger=Hired,
    correlation_key="who",
    data=Hire,
    start=lambda e: Hire(who=e.who),
    stages=list(FLOW.stages),
    cancel_on=[Withdrawn],
    on_update=[Update(Renamed, apply=rename)],
)
CATALOG = Catalog([ADAPTING])


def incoming(message: Event, message_id: str) -> Incoming:
    return Incoming(message.bus_type, message_id, SAGA, message)


def kept(message: Event, message_id: str, minutes: int = 0) -> EarlyInput:
    return early_input(incoming(message, message_id), received_at=T0 + timedelta(minutes=minutes))


def started(*early: EarlyInput) -> SagaState:
    given = StartSaga(ADAPTING, Hired(who="ada"), "t-1")
    applied = apply_input(CATALOG, Unstarted(SAGA, early) if early else None, given, T0)
    assert isinstance(applied.write, SagaWrite)
    assert applied.write.early_done == tuple(e.message_id for e in early)
    return applied.write.state


def test_an_event_for_a_saga_not_started_is_kept_once() -> None:
    given = DecideSaga(incoming(Approved(who="ada", by="grace"), "a-1"))
    applied = apply_input(CATALOG, None, given, T0)
    assert applied.write == KeepEarly(kept(Approved(who="ada", by="grace"), "a-1"))
    again = apply_input(CATALOG, Unstarted(SAGA, (kept(Approved(who="ada"), "a-1"),)), given, T0)
    assert again.write is None  # the same message id: kept once


def test_a_reply_or_a_timer_for_a_saga_not_there_is_not_kept() -> None:
    assert apply_input(CATALOG, None, DecideSaga(incoming(Opened(), "r-1")), T0).write is None
    other = Incoming(Approved.bus_type, "a-1", "nobody:ada", Approved(who="ada"))
    assert apply_input(CATALOG, None, DecideSaga(other), T0).write is None


def test_a_cancel_kept_before_the_start_stops_the_saga_before_anything_is_sent() -> None:
    s = started(kept(Withdrawn(who="ada"), "w-1"))
    assert s.status == SagaStatus.CANCELLED
    assert all(st.attempts == 0 for st in s.steps.values())
    assert "kept before the saga started" in format_timeline(s)


def test_an_update_kept_before_the_start_changes_the_data_the_first_stage_reads() -> None:
    s = started(kept(Renamed(who="ada", approver="lin"), "u-1"))
    assert s.data["approver"] == "lin"
    assert s.updates == ["u-1"]
    assert s.steps["open"].status == StepStatus.RUNNING


def test_an_approval_kept_before_the_start_settles_the_wait_when_it_starts() -> None:
    s = started(kept(Approved(who="ada", by="grace"), "a-1"))
    assert [e.message_id for e in s.early] == ["a-1"]
    given = DecideSaga(incoming(Opened(), "r-1"))
    applied = apply_input(CATALOG, StoredSaga(s, 1), given, T0)
    assert isinstance(applied.write, SagaWrite)
    done = applied.write.state
    assert done.status == SagaStatus.COMPLETED
    assert done.data["approver"] == "grace"
    events = [h.event for h in done.history]
    assert events.index("kept_before_start") < events.index("kept_early")
    assert events.index("kept_early") < events.index("applied_early")


def test_kept_events_apply_in_arrival_order() -> None:
    s = started(
        kept(Renamed(who="ada", approver="lin"), "u-1", 1),
        kept(Renamed(who="ada", approver="max"), "u-2", 2),
        kept(Withdrawn(who="ada"), "w-1", 3),
    )
    assert s.data["approver"] == "max"
    assert s.status == SagaStatus.COMPENSATING  # the account was asked for: undone first
    assert s.cause == "cancel"


def test_an_event_no_longer_an_input_of_the_saga_is_dropped_and_said_so() -> None:
    stale = EarlyInput(SAGA, "test.early.gone.v1", "g-1", {}, T0)
    s = started(stale)
    assert s.status == SagaStatus.RUNNING
    assert ("dropped_early", None) in [(h.event, h.step) for h in s.history]


STARTS = ["start", "a-1", "a-2", "x-1"]


@settings(max_examples=300, deadline=None)
@given(
    order=st.permutations(STARTS),
    reply_after=st.integers(0, 3),
    dups=st.lists(st.sampled_from(["a-1", "a-2", "x-1"]), max_size=4),
    stored=st.booleans(),
)
def test_an_early_signal_is_never_lost_even_before_its_saga_exists(
    order: list[str], reply_after: int, dups: list[str], stored: bool
) -> None:
    """Approvals and a rejection before the trigger, between, after, some again: kept by
    the store while there is no saga, in the saga's state before its wait, and the first of
    them in arrival order settles the wait, exactly once."""
    events = {
        "reply": incoming(Opened(), "r-1"),
        "a-1": incoming(Approved(who="ada", by="first"), "a-1"),
        "a-2": incoming(Approved(who="ada", by="second"), "a-2"),
        "x-1": incoming(Rejected(who="ada"), "x-1"),
    }
    at = order.index("start")
    arrivals = [*order]
    arrivals.insert(at + 1 + min(reply_after, len(order) - at - 1), "reply")
    saga: StoredSaga | None = None
    early: list[EarlyInput] = []  # the store's rows for the saga
    for name in [*arrivals, *dups]:
        loaded = saga if saga is not None else (Unstarted(SAGA, tuple(early)) if early else None)
        if name == "start":
            applied = apply_input(CATALOG, loaded, StartSaga(ADAPTING, Hired(who="ada"), "t"), T0)
        else:
            applied = apply_input(CATALOG, loaded, DecideSaga(events[name]), T0)
        write = applied.write
        if isinstance(write, KeepEarly):
            early.append(write.input)
        elif isinstance(write, SagaWrite):
            early = [e for e in early if e.message_id not in write.early_done]
            state = SagaState.from_json(write.state.to_json()) if stored else write.state
            saga = StoredSaga(state, 1 if saga is None else saga.revision + 1)
    assert saga is not None
    assert early == []  # every kept row applied with the start
    s = saga.state
    first = next(n for n in arrivals if n not in ("start", "reply"))
    assert s.steps["approval"].reply_ids == [first]
    assert s.early == []
    if first == "x-1":
        assert s.status == SagaStatus.COMPENSATING
    else:
        assert s.status == SagaStatus.COMPLETED
        assert s.data["approver"] == {"a-1": "first", "a-2": "second"}[first]
