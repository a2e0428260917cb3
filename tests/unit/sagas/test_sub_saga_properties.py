"""Property: a parent with a child saga ends in exactly one terminal state, whatever the
order of its replies, the child's end report (and its duplicates) and a cancel; a running
child is cancelled once, and the parent's own compensation runs once, after the child's end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from sagas import Cancel, Incoming, SagaStatus, StepStatus, Transition, decide, start
from sagas.children import CancelChildSaga, ChildSagaEnded, StartChildSaga
from tests.unit.sagas.hiring import Closed, Opened
from tests.unit.sagas.test_sub_sagas import PARENT, Hired

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
ENDS = ["completed", "failed", "compensated", "cancelled"]


@settings(max_examples=300, deadline=None)
@given(
    actions=st.lists(st.sampled_from(["open", "end", "dup", "cancel", "close"]), max_size=12),
    ends=st.lists(st.sampled_from(ENDS), min_size=1, max_size=3),
)
def test_a_parent_and_its_child_end_once_whatever_the_order(
    actions: list[str], ends: list[str]
) -> None:
    t = start(PARENT, Hired(who="ada"), message_id="h", now=T0)
    sent = list(t.commands)
    now = T0
    reports: list[Incoming] = []

    def feed(trigger: Incoming | Cancel) -> Transition:
        nonlocal t, now
        now += timedelta(milliseconds=1)
        before = t.state
        t = decide(PARENT, t.state, trigger, now)
        if before.terminal:
            assert not t.changed
        sent.extend(t.commands)
        return t

    def child_end(status: str) -> None:
        ended = ChildSagaEnded(
            child_id="equipment:hiring:ada/equipment",
            parent_id="hiring:ada",
            step="equipment",
            status=status,
        )
        reports.append(Incoming(ended.bus_type, f"end-{len(reports)}", "hiring:ada", ended))
        feed(reports[-1])

    def step(action: str, final: bool = False) -> None:
        started = any(isinstance(c.message, StartChildSaga) for c in sent)
        if action == "open" and t.state.steps["open"].status == StepStatus.RUNNING:
            feed(Incoming(Opened.bus_type, "opened", "hiring:ada", Opened()))
        elif action == "end" and started and not reports:
            cancelled = any(isinstance(c.message, CancelChildSaga) for c in sent)
            status = ends[0] if not (cancelled and final) else "cancelled"
            child_end(status)
        elif action == "dup" and reports:
            assert not feed(reports[0]).changed
        elif action == "cancel":
            feed(Cancel())
        elif action == "close" and t.state.steps["open"].status == StepStatus.COMPENSATING:
            feed(Incoming(Closed.bus_type, "closed", "hiring:ada", Closed()))

    for action in actions:
        step(action)
    for _ in range(10):  # then towards the end
        for action in ("open", "end", "close"):
            if not t.state.terminal:
                step(action, final=True)
    s = t.state
    assert s.terminal, s
    assert not any(
        x.status in (StepStatus.RUNNING, StepStatus.COMPENSATING) for x in s.steps.values()
    )
    kinds = [type(c.message).__name__ for c in sent]
    assert kinds.count("StartChildSaga") <= 1
    assert kinds.count("CancelChildSaga") <= 1
    assert kinds.count("Close") == (1 if s.steps["open"].status == StepStatus.COMPENSATED else 0)
    if s.status == SagaStatus.COMPLETED:
        assert reports
        assert reports[0].data.status == "completed"  # type: ignore[attr-defined]
        assert "Close" not in kinds
    if "CancelChildSaga" in kinds and "Close" in kinds:
        # the parent undid itself only after its child's end
        assert kinds.index("Close") > kinds.index("CancelChildSaga")
        assert s.steps["equipment"].status in (StepStatus.COMPENSATED, StepStatus.COMPLETED)
