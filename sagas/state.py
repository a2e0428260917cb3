"""The state of one saga instance: plain JSON-serializable data, persisted by the stores.

The state classes are slotted dataclasses, not pydantic models: the core changes a few
fields of a private copy per input, and pydantic's validated ``__setattr__`` and
``model_copy`` cost more than the rest of a transition (measured: about a third of
``decide``). pydantic still checks what comes back from a store: :meth:`SagaState.from_json`
validates through a ``TypeAdapter`` and names the bad field; :meth:`SagaState.to_json`
writes the same JSON pydantic did (orjson, ``Z`` for UTC), so stored states stay readable
both ways (round trip tested).

Example::

    stored = state.to_json()
    assert SagaState.from_json(stored) == state
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, TypeVar

import orjson
from pydantic import TypeAdapter

__all__ = [
    "TERMINAL",
    "EarlySignal",
    "HistoryEntry",
    "SagaState",
    "SagaStatus",
    "StepState",
    "StepStatus",
]

T = TypeVar("T")


class SagaStatus(StrEnum):
    """Where an instance is. Terminal: completed, compensated, failed, cancelled."""

    #: Steps are being sent and awaited.
    RUNNING = "running"
    #: A step failed or a cancel came: in-flight steps settle, then completed steps are
    #: undone in reverse order of completion.
    COMPENSATING = "compensating"
    #: Stuck until an operator acts (a compensation kept failing, or the definition version
    #: is no longer registered); ``reason`` says why; ``Retry`` resumes it.
    NEEDS_ATTENTION = "needs_attention"
    #: Every stage succeeded (or was skipped).
    COMPLETED = "completed"
    #: A step failed and every completed step with a compensation was undone.
    COMPENSATED = "compensated"
    #: A step failed and nothing needed undoing.
    FAILED = "failed"
    #: Cancelled; what had completed was undone.
    CANCELLED = "cancelled"


TERMINAL = frozenset(
    {SagaStatus.COMPLETED, SagaStatus.COMPENSATED, SagaStatus.FAILED, SagaStatus.CANCELLED}
)


class StepStatus(StrEnum):
    """Where one step (or wait) is."""

    PENDING = "pending"
    SKIPPED = "skipped"  # its when= was false
    RUNNING = "running"  # command sent (or wait started), reply awaited
    COMPLETED = "completed"
    FAILED = "failed"  # failure reply, attempts exhausted, rejection or deadline
    ABANDONED = "abandoned"  # a wait stopped by a cancel or another step's failure
    COMPENSATING = "compensating"  # compensation sent, reply awaited
    COMPENSATED = "compensated"


@dataclass(slots=True, kw_only=True)
class StepState:
    """One step's progress; every id sent and received is kept for audit and dedup."""

    name: str
    status: StepStatus = StepStatus.PENDING
    #: Action commands sent so far (the number of the latest attempt).
    attempts: int = 0
    #: Sends allowed before the step fails (grows by max_attempts on retry).
    attempt_limit: int = 0
    #: Compensation commands sent so far.
    compensation_attempts: int = 0
    #: Compensation sends allowed before needs_attention (grows on retry).
    compensation_attempt_limit: int = 0
    #: Every command id sent for this step, action and compensation, in order.
    command_ids: list[str] = field(default_factory=list)
    #: Ids of the replies accepted for this step.
    reply_ids: list[str] = field(default_factory=list)
    #: The timer currently armed for this step (reply timeout or wait deadline).
    timer_id: str | None = None
    #: When that timer fires (UTC).
    timer_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    compensated_at: datetime | None = None
    #: Position in the order of completion (compensation runs in reverse of it).
    completed_seq: int | None = None
    #: Why the step failed or why its compensation is stuck.
    error: str | None = None
    #: The idempotency key of the command in flight: the id of the attempt that a chain
    #: of re-sends after reply timeouts began with (None: no command sent yet).
    idempotency_key: str | None = None
    #: Out of attempts with no reply: it failed, yet one of its commands may have taken
    #: effect, so it is compensated like a completed step (a late reply is recorded).
    uncertain: bool = False
    #: Times an update of the data re-ran the step (``Step.rerun_on``), or re-planned its
    #: time (a delay, a held step): it numbers their timers.
    reruns: int = 0
    #: An update invalidated it: it is undone, then run again, when no other step is being
    #: undone (one compensation in flight at most).
    rerun_due: bool = False

    def copy(self) -> StepState:
        """A copy whose id lists are its own (everything else in a step is immutable)."""
        return _copy_step(self)


@dataclass(slots=True, kw_only=True)
class HistoryEntry:
    """One line of the instance's timeline (``bus sagas show`` renders them)."""

    at: datetime
    #: What happened: started, sent, resent, replied, timed_out, failed, skipped,
    #: completed, compensating, compensated, cancelled, needs_attention, retried, ...
    event: str
    step: str | None = None
    detail: str = ""


@dataclass(slots=True, kw_only=True)
class EarlySignal:
    """An event for a :class:`~sagas.definition.Wait` that came before the saga reached it.

    Kept in the saga's state (so every store keeps it, through crashes) and applied when
    the wait starts; a second delivery of the same event id is not kept twice.
    """

    #: The wait it is for.
    step: str
    #: CloudEvents ``type`` and ``id`` of the event.
    type: str
    message_id: str
    #: The event's ``model_dump(mode="json")`` (validated again when applied).
    data: dict[str, Any]
    #: When it came.
    at: datetime
    causation_id: str | None = None


@dataclass(slots=True, kw_only=True)
class SagaState:
    """One saga instance: its definition version, status, data, steps and timeline.

    Example::

        state = SagaState.from_json(row_json)
        state.status, state.steps["create_account"].status, state.to_dict(history=False)
    """

    saga_id: str
    name: str
    #: The definition version the instance started with; it keeps running on it.
    version: int
    status: SagaStatus
    #: The saga data model's ``model_dump(mode="json")``.
    data: dict[str, Any]
    #: Step name -> progress, in declaration order.
    steps: dict[str, StepState]
    #: Index of the stage being run.
    stage: int = 0
    #: Within a :class:`~sagas.definition.Choice` being run: the index in the path taken.
    substage: int = 0
    #: Choice name -> the branch key it took (replaced, never changed in place).
    branches: dict[str, str] = field(default_factory=dict)
    #: Why the saga is compensating or ended failed, compensated or cancelled.
    reason: str | None = None
    #: Why the saga needs attention (None otherwise); a retry clears it.
    attention: str | None = None
    #: What started compensation: a step's failure, a cancel, the saga's deadline, or (a
    #: child saga that completed) its parent's request to undo it.
    cause: Literal["failure", "cancel", "deadline", "parent"] | None = None
    #: The status to go back to when a needs_attention instance is retried.
    resume_status: SagaStatus | None = None
    #: Completions so far (source of StepState.completed_seq).
    completions: int = 0
    #: When the saga's deadline passes (None: its definition has none).
    deadline_at: datetime | None = None
    #: The deadline's timer while armed (cancelled when the saga ends first).
    deadline_timer: str | None = None
    #: The deadline passed before the saga ended (it stays true).
    late: bool = False
    #: Events for waits not yet started, in arrival order (applied when the wait starts;
    #: replaced, never changed in place, by the core).
    early: list[EarlySignal] = field(default_factory=list)
    #: Ids of the update events applied (``SagaDefinition.on_update``): one delivered again
    #: changes nothing. Replaced, never changed in place, by the core.
    updates: list[str] = field(default_factory=list)
    #: The saga that started this one (:class:`~sagas.children.SubSaga`); None: a trigger.
    parent_id: str | None = None
    #: The trigger's CloudEvents ``correlationid`` (the upstream business process it is
    #: part of), if it carried one; the console's search finds the saga by it.
    correlation_id: str | None = None
    #: Id of the trigger message.
    trigger_id: str
    started_at: datetime
    updated_at: datetime
    history: list[HistoryEntry] = field(default_factory=list)

    @property
    def terminal(self) -> bool:
        """True once the instance reached completed, compensated, failed or cancelled."""
        return self.status in TERMINAL

    def to_json(self) -> str:
        """The stored form: JSON text, datetimes in ISO 8601 (``Z`` for UTC)."""
        # orjson serializes dataclasses itself, but at ~2 us an object it was slower than
        # pydantic; plain dicts of the same fields, in the same order, take a fifth of that.
        return orjson.dumps(_state_fields(self), option=orjson.OPT_UTC_Z).decode()

    def to_dict(self, *, history: bool = True) -> dict[str, Any]:
        """The stored form as JSON-ready Python values (``history=False`` leaves it out)."""
        out: dict[str, Any] = orjson.loads(self.to_json())
        if not history:
            del out["history"]
        return out

    @classmethod
    def from_json(cls, raw: str | bytes) -> SagaState:
        """Read :meth:`to_json`'s output back, validated: a bad stored state raises
        pydantic's ``ValidationError`` naming the field."""
        return _ADAPTER.validate_json(raw)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> SagaState:
        """Read :meth:`to_dict`'s output back, validated like :meth:`from_json`."""
        return _ADAPTER.validate_python(raw)

    def private_copy(self) -> SagaState:
        """A copy whose own fields, step map and history list can change without touching
        this state; the steps, history lines and ``data`` are shared (see
        :meth:`StepState.copy` to change a step)."""
        return _private_copy(self)


# -- functions generated from the dataclass fields --------------------------------------
# Why generated: each field written out by hand in four places meant a new field could be
# left out of a copy or of the stored JSON. Why not a loop over the names at call time:
# copies and to_json run several times per transition, and a loop (getattr/setattr, or
# attrgetter + zip) took 1.3-4x as long as the written-out code (measured with timeit).
# So the written-out code is generated from dataclasses.fields, once, at import - the way
# dataclasses makes __init__ and __eq__.


def _names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


def _compile(cls: type, expression: str, namespace: dict[str, Any]) -> Any:
    """The function ``expression`` (a lambda's source) evaluates to, in ``namespace``."""
    code = compile(expression, f"<sagas.state: generated from {cls.__name__}'s fields>", "eval")
    return eval(code, namespace)  # the source is built from field names only, above


def _check(cls: type, special: Mapping[str, str]) -> None:
    unknown = set(special) - set(_names(cls))
    if unknown:  # a renamed field must not silently lose its special handling
        raise TypeError(f"{cls.__name__} has no field(s) {sorted(unknown)}")


def _copier(cls: type[T], *, own: Mapping[str, str]) -> Callable[[T], T]:
    """``cls(field=o.field, ...)`` over every field of ``cls``; a field in ``own`` gets a new
    container of its own (``own`` maps it to the container type, e.g. ``list``)."""
    _check(cls, own)
    args = ", ".join(f"{n}={own[n]}(o.{n})" if n in own else f"{n}=o.{n}" for n in _names(cls))
    result: Callable[[T], T] = _compile(cls, f"lambda o: cls({args})", {"cls": cls})
    return result


def _dumper(
    cls: type[T], *, nested: Mapping[str, str] | None = None, **namespace: Any
) -> Callable[[T], dict[str, Any]]:
    """``{"field": o.field, ...}`` over every field of ``cls`` in declaration order (the order
    of the stored JSON); ``nested`` maps a field to the expression that dumps its value."""
    nested = nested or {}
    _check(cls, nested)
    items = ", ".join(f"{n!r}: {nested.get(n, f'o.{n}')}" for n in _names(cls))
    result: Callable[[T], dict[str, Any]] = _compile(cls, f"lambda o: {{{items}}}", namespace)
    return result


_copy_step = _copier(StepState, own={"command_ids": "list", "reply_ids": "list"})
# data is shared (the core replaces it, never changes it in place); steps are shared until
# the core changes one (StepState.copy).
_private_copy = _copier(SagaState, own={"steps": "dict", "history": "list"})
_step_fields = _dumper(StepState)
_history_fields = _dumper(HistoryEntry)
_signal_fields = _dumper(EarlySignal)
_state_fields = _dumper(
    SagaState,
    nested={
        "steps": "{name: step(st) for name, st in o.steps.items()}",
        "early": "[signal(e) for e in o.early]",
        "history": "[entry(h) for h in o.history]",
    },
    step=_step_fields,
    entry=_history_fields,
    signal=_signal_fields,
)

_ADAPTER: TypeAdapter[SagaState] = TypeAdapter(SagaState)
