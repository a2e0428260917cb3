"""Orchestration: saga definitions, the pure transition core, and the Mermaid renderer.

Read in order: :mod:`sagas.definition` (the DSL), :mod:`sagas.state` (an instance),
:mod:`sagas.triggers` and :mod:`sagas.effects` (the core's inputs and outputs),
:mod:`sagas.core` (``start``/``decide``), :mod:`sagas.versions` (definitions by version),
:mod:`sagas.render` (the diagram). All of them are pure: no I/O, no clock, no randomness.
The coordinator and the stores are the shell around them. Uses only bus's public API.

Example::

    from sagas import Incoming, decide, start
    t = start(onboarding, hired, message_id="m-1", now=now)
    t = decide(onboarding, t.state, Incoming(...), now)
"""

from sagas.core import decide, start
from sagas.definition import (
    Choice,
    Compensation,
    Deadline,
    Delay,
    Parallel,
    SagaDefinition,
    Stage,
    Step,
    SubSaga,
    Task,
    Update,
    Wait,
)
from sagas.effects import CommandToSend, TimerToSet, Transition, command_id, timer_id
from sagas.render import render_mermaid
from sagas.state import TERMINAL, HistoryEntry, SagaState, SagaStatus, StepState, StepStatus
from sagas.triggers import Cancel, Incoming, Retry, TaskDone, TimerFired, Trigger
from sagas.versions import Catalog, decide_versioned

__all__ = [
    "TERMINAL",
    "Cancel",
    "Catalog",
    "Choice",
    "CommandToSend",
    "Compensation",
    "Deadline",
    "Delay",
    "HistoryEntry",
    "Incoming",
    "Parallel",
    "Retry",
    "SagaDefinition",
    "SagaState",
    "SagaStatus",
    "Stage",
    "Step",
    "StepState",
    "StepStatus",
    "SubSaga",
    "Task",
    "TaskDone",
    "TimerFired",
    "TimerToSet",
    "Transition",
    "Trigger",
    "Update",
    "Wait",
    "command_id",
    "decide",
    "decide_versioned",
    "render_mermaid",
    "start",
    "timer_id",
]
