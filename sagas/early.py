"""Inputs that came before their saga existed: kept by the store, applied when it starts.

A manager's approval, a withdrawal or a change of a hire may reach the coordinator before
the hire's trigger (other topics, other partitions: no order between them). Such an input
- an awaited (``Wait``), cancelling (``cancel_on``) or update (``on_update``) event whose
saga does not exist - is not dropped: the store keeps it as an :class:`EarlyInput`, keyed
by the saga id it correlates to, with its arrival time (:class:`~sagas.stores.writes.KeepEarly`).
When the saga starts, :func:`apply_before_start` applies the kept inputs in arrival order,
before its first stage, in the start's transition: a cancel stops it before anything is
sent, an update changes the data the first stage reads, an awaited event is kept for its
wait (:class:`~sagas.state.EarlySignal`), as for a saga that had started. Each is a
``kept_before_start`` timeline line. The store deletes them with the start's write, and
purges the ones whose saga never started after a retention (7 days by default).
Pure: no I/O, no clock.

Example::

    kept = early_input(incoming, received_at=now)            # for a saga not there yet
    t = start(onboarding, hired, message_id=..., now=later, early=[kept])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from sagas.definition import SagaDefinition, Wait
from sagas.state import SagaStatus, StepStatus
from sagas.triggers import Incoming
from sagas.undo import unwind
from sagas.updates import apply_update, update_for

if TYPE_CHECKING:  # sagas.run imports the definition, which this module is read with
    from sagas.run import Run

__all__ = [
    "DEFAULT_EARLY_RETENTION",
    "EarlyInput",
    "apply_before_start",
    "early_input",
    "keeps_early",
]

#: How long an input waits for its saga before the purge deletes it.
DEFAULT_EARLY_RETENTION = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class EarlyInput:
    """An event for a saga that did not exist when it came (a row of the saga store)."""

    #: The saga it correlates to (by the definition's correlation key).
    saga_id: str
    #: CloudEvents ``type`` and ``id``: the same id kept twice is kept once.
    type: str
    message_id: str
    #: The event's ``model_dump(mode="json")`` (validated again when applied).
    data: dict[str, Any]
    #: When it came (UTC); the purge deletes it a retention later if its saga never started.
    received_at: datetime
    causation_id: str | None = None


def early_input(incoming: Incoming, *, received_at: datetime) -> EarlyInput:
    """What the store keeps of ``incoming`` (its saga is ``incoming.correlation_id``)."""
    return EarlyInput(
        incoming.correlation_id,
        incoming.type,
        incoming.message_id,
        incoming.data.model_dump(mode="json"),
        received_at,
        incoming.causation_id,
    )


def keeps_early(definition: SagaDefinition, type_name: str) -> bool:
    """Whether an event of ``type_name`` is kept for a saga of ``definition`` that does not
    exist yet: an awaited, cancelling or update event (routed by the correlation key)."""
    return any(t.bus_type == type_name for t in definition.outside_types())


def apply_before_start(run: Run, kept: Sequence[EarlyInput]) -> None:
    """Apply ``kept`` (arrival order) to a saga being started, before its first stage."""
    models = {t.bus_type: t for t in run.d.outside_types()}
    for e in kept:
        model = models.get(e.type)
        if run.s.status != SagaStatus.RUNNING or model is None:
            why = "the saga stopped before" if model is not None else "not an input of it"
            run.log("dropped_early", detail=f"{e.type} {e.message_id}: {why}")
            continue
        try:
            message = model.model_validate(e.data)
        except ValidationError as exc:  # kept under an older model of the event
            run.log("dropped_early", detail=f"{e.type} {e.message_id}: invalid now ({exc})")
            continue
        since = f"{e.received_at:%Y-%m-%dT%H:%M:%SZ}"
        run.log(
            "kept_before_start",
            detail=f"{e.type} {e.message_id} kept before the saga started (since {since})",
        )
        incoming = Incoming(e.type, e.message_id, run.s.saga_id, message, e.causation_id)
        _apply(run, incoming)


def _apply(run: Run, incoming: Incoming) -> None:
    """A kept event, as the core applies it to a running saga that has not begun."""
    d = run.d
    if any(incoming.type == t.bus_type for t in d.cancel_on):
        unwind(run, "cancel", f"{incoming.type} {incoming.message_id}")
        return
    update = update_for(d.on_update, incoming.type)
    if update is not None:
        if incoming.message_id not in run.s.updates:
            apply_update(run, update, incoming.message_id, incoming.type, incoming.data)
        return
    if any(e.message_id == incoming.message_id for e in run.s.early):
        return
    for st in run.s.steps.values():
        spec = d.steps[st.name]
        if not isinstance(spec, Wait) or all(
            t.bus_type != incoming.type for t in spec.event + spec.rejected
        ):
            continue
        if st.status == StepStatus.PENDING:
            run.keep_early(st.name, incoming)  # applied when the wait starts
        elif st.status == StepStatus.RUNNING:  # an update before it began the wait
            run.settle_wait(st, incoming)
            run.settled()
        return
