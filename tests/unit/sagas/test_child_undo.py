"""A child saga that completed is undone when its parent compensates later: the parent asks
it (CompensateChildSaga), the child compensates its steps, last first, ends compensated and
reports again; the parent's step counts as compensated only then, and it goes on undoing."""

from __future__ import annotations

from sagas import Cancel, Incoming, SagaStatus, StepStatus, Transition, decide
from sagas.children import (
    CancelChildSaga,
    ChildSagaEnded,
    CompensateChildSaga,
)
from sagas.timeline import format_timeline
from tests.unit.sagas.child_undo_sagas import (
    KIT,
    PARENT,
    Confirm,
    Hired,
    Packed,
    Recall,
    Recalled,
    Refused,
    Shipped,
    Unpack,
    Unpacked,
)
from tests.unit.sagas.hiring import T0, Close, Closed, reply, started_child

CHILD = "kit:welcome:ada/kit"


def report(child: Transition) -> tuple[Incoming, str]:
    [cmd] = [c for c in child.commands if c.kind == "report"]
    assert isinstance(cmd.message, ChildSagaEnded)
    return Incoming(cmd.message.bus_type, cmd.id, "welcome:ada", cmd.message), cmd.message.status


def to_child(t: Transition, parent: Transition) -> Transition:
    [cmd] = [c for c in parent.commands if isinstance(c.message, CompensateChildSaga)]
    return decide(KIT, t.state, Incoming(cmd.message.bus_type, cmd.id, CHILD, cmd.message), T0)


def completed_child() -> tuple[Transition, Transition]:
    """The parent's open and kit completed (the child shipped and packed); confirm sent."""
    parent, child = started_child(PARENT, KIT, Hired(who="ada"), "r-open")
    child = reply(KIT, child, Shipped(), "r-ship")
    child = reply(KIT, child, Packed(), "r-pack")
    assert child.state.status == SagaStatus.COMPLETED
    ended, _ = report(child)
    parent = decide(PARENT, parent.state, ended, T0)
    assert [type(c.message) for c in parent.commands] == [Confirm]
    return parent, child


def test_a_parent_that_fails_after_its_child_completed_asks_the_child_to_undo_itself() -> None:
    parent, child = completed_child()
    parent = reply(PARENT, parent, Refused(reason="no budget"), "r-confirm")
    [ask] = parent.commands
    assert ask.message == CompensateChildSaga(
        child_id=CHILD, parent_id="welcome:ada", step="kit", reason="step confirm failed: "
        "failure reply test.undo.refused.v1 r-confirm: no budget",
    )  # fmt: skip
    assert parent.state.steps["kit"].status == StepStatus.COMPENSATING
    assert parent.state.steps["open"].status == StepStatus.COMPLETED  # not before the child

    child = to_child(child, parent)
    assert child.state.status == SagaStatus.COMPENSATING
    assert [type(c.message) for c in child.commands] == [Unpack]  # last first
    child = reply(KIT, child, Unpacked(), "u-pack")
    assert [type(c.message) for c in child.commands] == [Recall]
    child = reply(KIT, child, Recalled(), "u-ship")
    assert child.state.status == SagaStatus.COMPENSATED
    ended, status = report(child)
    assert status == "compensated"

    parent = decide(PARENT, parent.state, ended, T0)
    assert parent.state.steps["kit"].status == StepStatus.COMPENSATED
    assert [type(c.message) for c in parent.commands] == [Close]  # then the parent goes on
    parent = reply(PARENT, parent, Closed(), "u-open")
    assert parent.state.status == SagaStatus.COMPENSATED


def test_the_childs_second_report_is_a_new_message_and_duplicates_change_nothing() -> None:
    parent, child = completed_child()
    first, _ = report(child)
    parent = reply(PARENT, parent, Refused(), "r-confirm")
    child = to_child(child, parent)
    again = to_child(child, parent)  # the request delivered twice
    assert not again.changed
    child = reply(KIT, child, Unpacked(), "u-pack")
    child = reply(KIT, child, Recalled(), "u-ship")
    second, _ = report(child)
    assert second.message_id != first.message_id
    assert not to_child(child, parent).changed  # replayed after the end: undone once
    parent = decide(PARENT, parent.state, second, T0)
    assert not decide(PARENT, parent.state, second, T0).changed
    assert not decide(PARENT, parent.state, first, T0).changed


def test_a_running_child_is_not_undone_by_a_request() -> None:
    _, child = started_child(PARENT, KIT, Hired(who="ada"), "r-open")
    ask = CompensateChildSaga(child_id=CHILD, parent_id="welcome:ada", step="kit", reason="x")
    assert not decide(KIT, child.state, Incoming(ask.bus_type, "a", CHILD, ask), T0).changed


def test_a_child_that_completed_before_the_parents_cancel_reached_it_is_undone_next() -> None:
    parent, child = started_child(PARENT, KIT, Hired(who="ada"), "r-open")
    parent = decide(PARENT, parent.state, Cancel(), T0)
    [cancel] = parent.commands
    assert isinstance(cancel.message, CancelChildSaga)
    child = reply(KIT, child, Shipped(), "r-ship")
    child = reply(KIT, child, Packed(), "r-pack")  # completed before the cancel came
    ended, _ = report(child)
    assert not decide(KIT, child.state, Cancel(cancel.message.reason), T0).changed
    parent = decide(PARENT, parent.state, ended, T0)
    assert [type(c.message) for c in parent.commands] == [CompensateChildSaga]
    child = to_child(child, parent)
    assert [type(c.message) for c in child.commands] == [Unpack]
    child = reply(KIT, child, Unpacked(), "u-pack")
    child = reply(KIT, child, Recalled(), "u-ship")
    parent = decide(PARENT, parent.state, report(child)[0], T0)
    assert [type(c.message) for c in parent.commands] == [Close]
    parent = reply(PARENT, parent, Closed(), "u-open")
    assert parent.state.status == SagaStatus.CANCELLED


def test_the_timelines_show_the_request_and_the_undo() -> None:
    parent, child = completed_child()
    parent = reply(PARENT, parent, Refused(), "r-confirm")
    child = to_child(child, parent)
    child = reply(KIT, child, Unpacked(), "u-pack")
    child = reply(KIT, child, Recalled(), "u-ship")
    parent = decide(PARENT, parent.state, report(child)[0], T0)
    told = format_timeline(parent.state)
    assert "child_compensating" in told
    assert f"{CHILD} completed: undo it" in told
    assert "child kit:welcome:ada/kit compensated" in told
    kid = format_timeline(child.state)
    for line in ("undo_requested", "its parent compensates", "compensation_sent", "compensated"):
        assert line in kid
    assert kid.count("reported") == 2
