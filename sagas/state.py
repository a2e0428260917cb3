"""The state of one saga instance: plain JSON-serializable data, persisted by the stores.

``SagaState.model_dump(mode="json")`` is the stored form and ``SagaState.model_validate``
reads it back (round trip tested). The core never mutates a state it is given: it works on
a deep copy and returns the new state in its :class:`~sagas.effects.Transition`.

Example::

    stored = state.model_dump(mode="json")
    assert SagaState.model_validate(stored) == state
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = ["TERMINAL", "HistoryEntry", "SagaState", "SagaStatus", "StepState", "StepStatus"]


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


class StepState(BaseModel):
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
    command_ids: list[str] = Field(default_factory=list)
    #: Ids of the replies accepted for this step.
    reply_ids: list[str] = Field(default_factory=list)
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


class HistoryEntry(BaseModel):
    """One line of the instance's timeline (``bus sagas show`` renders them)."""

    at: datetime
    #: What happened: started, sent, resent, replied, timed_out, failed, skipped,
    #: completed, compensating, compensated, cancelled, needs_attention, retried, ...
    event: str
    step: str | None = None
    detail: str = ""


class SagaState(BaseModel):
    """One saga instance: its definition version, status, data, steps and timeline."""

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
    #: Why the saga is compensating or ended failed, compensated or cancelled.
    reason: str | None = None
    #: Why the saga needs attention (None otherwise); a retry clears it.
    attention: str | None = None
    #: What started compensation: a step's failure or a cancel.
    cause: Literal["failure", "cancel"] | None = None
    #: The status to go back to when a needs_attention instance is retried.
    resume_status: SagaStatus | None = None
    #: Completions so far (source of StepState.completed_seq).
    completions: int = 0
    #: Id of the trigger message.
    trigger_id: str
    started_at: datetime
    updated_at: datetime
    history: list[HistoryEntry] = Field(default_factory=list)

    @property
    def terminal(self) -> bool:
        """True once the instance reached completed, compensated, failed or cancelled."""
        return self.status in TERMINAL
