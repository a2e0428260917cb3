"""Changes mid-process: an update event changes a running saga's data, and the saga adapts.

``SagaDefinition(on_update=[Update(HireChanged, apply=change_hire)])``: an update event,
routed like a ``cancel_on`` event (by the correlation key), is applied to a *running*
saga's data by a named ``(data, event) -> data``. Then, in the same transition:

- **re-plan**: a :class:`~sagas.waits.Delay` still waiting, and a step held by its
  ``not_before``, have their time computed again from the new data (with the ``now`` of
  when they were reached); a moved time moves the timer (a new timer id, so a firing of
  the old one changes nothing), a time now past goes on at once;
- **re-run**: a completed :class:`~sagas.step.Step` whose ``rerun_on(old, new)`` is
  true is compensated (if it has a compensation), then sent again; the saga goes on past
  its current stage only once every re-run settled.

Stages not reached yet need nothing: they read the data when reached. Every change is a
timeline line (``updated``, ``replanned``, ``rerun``). An update for a saga that is not
running (compensating, parked, ended), or one seen before (its id), changes nothing.
Pure: the flow is :class:`sagas.run.Run`'s.

Example::

    def change_hire(data: Hire, changed: HireChanged) -> Hire:
        return data.model_copy(update=changed.model_dump(exclude_none=True))

    SagaDefinition(..., on_update=[Update(HireChanged, apply=change_hire)])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from bus import Event
from sagas.stage_types import Updater
from sagas.state import SagaStatus, StepState, StepStatus
from sagas.step import Step
from sagas.waits import Delay

if TYPE_CHECKING:  # sagas.run imports the definition, which imports this module
    from sagas.run import Run

__all__ = ["Update", "apply_update", "next_rerun", "update_for"]


@dataclass(frozen=True, slots=True, init=False)
class Update:
    """Update events of a definition and the named function applying them to the data.

    Example::

        Update(HireChanged, apply=change_hire)   # change_hire(data, event) -> data
    """

    #: The update events (each must carry the definition's correlation key).
    event: tuple[type[Event], ...]
    #: A *named* ``(data, event) -> data`` (it labels the diagram and the timeline).
    apply: Updater

    def __init__(self, event: type[Event] | Sequence[type[Event]], *, apply: Updater) -> None:
        object.__setattr__(self, "event", (event,) if isinstance(event, type) else tuple(event))
        object.__setattr__(self, "apply", apply)


def update_for(updates: Sequence[Update], type_name: str) -> Update | None:
    """The :class:`Update` that events of ``type_name`` are, if any."""
    for u in updates:
        if any(t.bus_type == type_name for t in u.event):
            return u
    return None


def apply_update(run: Run, spec: Update, message_id: str, type_name: str, event: Any) -> None:
    """Apply an update event to ``run`` (a :class:`sagas.run.Run` of a running saga)."""
    old = run.data
    new = spec.apply(old, event)
    run.set_data(new)
    run.s.updates = [*run.s.updates, message_id]
    changes = _diff(old, run.data)
    run.log("updated", detail=f"{type_name} {message_id} ({spec.apply.__name__}): {changes}")
    _replan(run)
    for st in list(run.s.steps.values()):
        spec_ = run.d.steps[st.name]
        if st.status != StepStatus.COMPLETED or st.rerun_due or not isinstance(spec_, Step):
            continue
        if spec_.rerun_on is not None and spec_.rerun_on(old, run.data):
            _rerun(run, st, spec_)
    next_rerun(run)
    run.settled()


def _diff(old: BaseModel, new: BaseModel) -> str:
    a, b = old.model_dump(mode="json"), new.model_dump(mode="json")
    changed = [f"{k} {a.get(k)} -> {b[k]}" for k in b if a.get(k) != b[k]]
    return ", ".join(changed) or "no change"


def _replan(run: Run) -> None:
    """Compute again the time of every delay waiting and every step held, from the data."""
    for st in list(run.s.steps.values()):
        spec = run.d.steps[st.name]
        if st.status != StepStatus.RUNNING or st.timer_at is None:
            continue
        if isinstance(spec, Delay):
            schedule, kind = spec.until, "delay"
        elif isinstance(spec, Step) and st.attempts == 0 and spec.not_before is not None:
            schedule, kind = spec.not_before, "not_before"
        else:
            continue
        at = run.time_of(schedule, st.name, since=st.started_at)
        if at == st.timer_at:
            continue
        was = st.timer_at
        st = run.own(st.name)
        st.reruns += 1
        run.log("replanned", st.name, f"{kind} {was:%Y-%m-%dT%H:%M:%SZ} -> {at:%Y-%m-%dT%H:%M:%SZ}")
        if at > run.now:
            run.arm(st, f"{kind}_replanned", st.reruns, at)
        elif isinstance(spec, Delay):
            run.disarm(st)
            run.delay_done(st, "the time had passed (re-planned)")
        else:
            run.disarm(st)
            run.send_action(st)


def _rerun(run: Run, st: StepState, spec: Step) -> None:
    """Send a completed step again, or mark it to be undone first (:func:`next_rerun`)."""
    st = run.own(st.name)
    st.reruns += 1
    how = "compensating first" if spec.compensation else "nothing to undo"
    run.log("rerun", st.name, f"the change invalidates it ({how})")
    if spec.compensation is not None:
        st.rerun_due = True
    else:
        run.send_again(st)


def next_rerun(run: Run) -> None:
    """Undo the next step due to re-run, last completed first, one at a time (as the saga
    undoes itself: one compensation in flight at most), if none is being undone."""
    steps = run.s.steps.values()
    if run.s.status != SagaStatus.RUNNING or any(
        s.status == StepStatus.COMPENSATING for s in steps
    ):
        return
    due = [s for s in steps if s.rerun_due and s.status == StepStatus.COMPLETED]
    if not due:
        return
    st = run.own(max(due, key=lambda s: s.completed_seq or 0).name)
    st.rerun_due = False
    spec = run.d.steps[st.name]
    assert isinstance(spec, Step)
    assert spec.compensation is not None
    st.compensation_attempt_limit = st.compensation_attempts + spec.compensation.max_attempts
    run.send_compensation(st)
