"""The steps an operator can answer from the console: a saga's running waits.

A :class:`~sagas.definition.Wait` goes on when its event arrives and fails (the saga
compensates) when a ``rejected`` event does. The console answers it by publishing that
event with the saga id as its correlation id (the coordinator routes it to the saga),
its payload prefilled from the saga's data and editable by the operator.

Human tasks (:class:`~sagas.task_stage.Task`) are not answered here: they are completed
through their own form, written to the store rather than published
(:mod:`sagas.web.task_views`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bus import Event, OutgoingRecord, PayloadInvalidError, envelope_for, record_for
from sagas.definition import SagaDefinition, Wait
from sagas.state import SagaState, StepStatus

__all__ = ["Answerable", "answer_record", "prefilled", "waiting_steps"]


@dataclass(frozen=True, slots=True)
class Answerable:
    """A running step an operator may answer, and the events that answer it."""

    step: str
    approve: tuple[type[Event], ...]
    reject: tuple[type[Event], ...]

    def event_type(self, verdict: str) -> type[Event] | None:
        """The first event class of ``verdict`` ("approve" or "reject"), or None."""
        types = self.approve if verdict == "approve" else self.reject
        return types[0] if types else None


def waiting_steps(definition: SagaDefinition | None, state: SagaState) -> list[Answerable]:
    """The waits of ``state`` that are running now (none without the definition)."""
    if definition is None:
        return []
    out: list[Answerable] = []
    for stage in definition.iter_steps():
        step = state.steps.get(stage.name)
        if isinstance(stage, Wait) and step is not None and step.status == StepStatus.RUNNING:
            out.append(Answerable(stage.name, stage.event, stage.rejected))
    return out


def prefilled(model: type[Event], state: SagaState) -> dict[str, Any]:
    """A payload for ``model`` from the saga's data: every field the data has a value for."""
    return {name: state.data[name] for name in model.model_fields if name in state.data}


def answer_record(
    model: type[Event],
    payload: dict[str, Any],
    state: SagaState,
    *,
    source: str,
    id: str,
    time: datetime,
) -> OutgoingRecord:
    """The record answering the saga: ``payload`` validated as ``model``, correlated to it.

    Raises :class:`~bus.errors.PayloadInvalidError` naming each bad field.
    """
    try:
        message = model.model_validate(payload)
    except ValueError as exc:
        raise PayloadInvalidError(f"{model.bus_type}: {exc}") from exc
    env = envelope_for(message, source=source, id=id, time=time, correlationid=state.saga_id)
    return record_for(message, env)
