"""A saga told in business terms, before its timeline: ``Ada Lovelace (engineering,
employee): account alovelace created; ... -> completed``.

A definition declares how its instances read with ``describe=`` (a pure function of the
saga data and state, see :attr:`sagas.definition.SagaDefinition.describe`); the helpers
here give it what the state records in technical terms - why a step failed, what was
undone, what the saga still waits for. Without a hook, :func:`story` tells the steps'
outcomes. Pure: no I/O, no clock.

Example::

    print(story(onboarding, state))
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from pydantic import ValidationError

from sagas.definition import SagaDefinition
from sagas.state import SagaState, SagaStatus, StepState, StepStatus

__all__ = ["failed_step", "failure_reason", "outcome", "story", "undone", "waiting_for"]

#: A message id as it appears in history details and step errors (UUIDs).
MESSAGE_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def story(definition: SagaDefinition | None, state: SagaState) -> str:
    """``state`` in one sentence: the definition's ``describe`` hook when it has one (and
    the stored data still fits its model), else the steps' outcomes."""
    if definition is not None and definition.describe is not None:
        try:
            data = definition.data.model_validate(state.data)
        except ValidationError:
            data = None
        if data is not None:
            return definition.describe(data, state)
    done = [n for n, st in state.steps.items() if st.status == StepStatus.COMPLETED]
    told = f"{state.saga_id}: " + (", ".join(done) + " done" if done else "nothing done yet")
    failed = failed_step(state)
    if failed is not None:
        told += f"; {failed.name} failed" + _colon(failure_reason(failed))
    return told + outcome(state, {})


def failed_step(state: SagaState) -> StepState | None:
    """The step whose failure made the saga compensate (None: no step failed)."""
    return next((st for st in state.steps.values() if st.status == StepStatus.FAILED), None)


def failure_reason(step: StepState) -> str | None:
    """Why ``step`` failed, as the other system said it (a failure reply's ``reason``), or
    what ran out (attempts, a deadline); message ids left out. None: it did not fail.

    >>> failure_reason(StepState(name="x", status=StepStatus.FAILED,
    ...     error="failure reply payroll.record.rejected.v1 01a2-...: missing tax id"))
    'missing tax id'
    """
    if step.error is None:
        return None
    if step.error.startswith("failure reply "):
        _, colon, reason = step.error.partition(": ")
        return reason if colon else None
    return MESSAGE_ID.sub("", step.error).strip()


def undone(state: SagaState) -> list[str]:
    """The steps compensated so far, in the order they were undone (last completed first)."""
    gone = [st for st in state.steps.values() if st.status == StepStatus.COMPENSATED]
    return [st.name for st in sorted(gone, key=lambda st: -(st.completed_seq or 0))]


def waiting_for(state: SagaState) -> list[str]:
    """The steps running now (a command sent, a wait open, a compensation in flight)."""
    busy = {StepStatus.RUNNING, StepStatus.COMPENSATING}
    return [n for n, st in state.steps.items() if st.status in busy]


def outcome(state: SagaState, undo_words: Mapping[str, str]) -> str:
    """`` -> compensated: licenses revoked, account removed`` - the status, and what was
    undone in the words ``undo_words`` gives each step (default: its name)."""
    if state.status == SagaStatus.COMPLETED:
        return " -> completed"
    gone = [undo_words.get(n, f"{n} undone") for n in undone(state)]
    if state.status in (SagaStatus.RUNNING, SagaStatus.COMPENSATING):
        busy = ", ".join(waiting_for(state))
        tail = f" -> {state.status.value}" + (f" ({busy})" if busy else "")
    elif state.status == SagaStatus.NEEDS_ATTENTION:
        tail = f" -> needs attention: {state.attention or state.reason or 'see the timeline'}"
    elif state.status == SagaStatus.FAILED:
        tail = " -> failed, nothing to undo"
    else:
        tail = f" -> {state.status.value}"
    return tail + (": " + ", ".join(gone) if gone else "")


def _colon(text: str | None) -> str:
    return f": {text}" if text else ""
