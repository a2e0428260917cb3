"""What the coordinator tells the metrics: the :class:`SagaObserver` hooks, and
:func:`report_change`, which reads a stored change's new history lines into hook calls.

Example::

    report_change(observer, before=old_state, after=new_state)   # after the commit
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Protocol

from sagas.state import SagaState, SagaStatus

__all__ = ["NoObserver", "SagaObserver", "end_line", "report_change", "start_line"]


class SagaObserver(Protocol):
    """Hooks for metrics; :class:`sagas.metrics.SagaMetrics` is one
    (``observer=default_saga_metrics()``).

    Called after the transaction that made the change committed; each must be cheap.
    """

    def saga_started(self, saga: str) -> None: ...

    def saga_finished(self, saga: str, status: str, duration_s: float) -> None: ...

    def saga_needs_attention(self, saga: str) -> None: ...

    def saga_step_finished(self, saga: str, step: str, outcome: str, duration_s: float) -> None:
        """A step's reply (``succeeded``/``failed``), its undo's confirmation
        (``compensated``) or a timeout (``timed_out``) came ``duration_s`` after its command
        or compensation was sent (or its wait started)."""

    def saga_timeout_fired(self, saga: str, step: str) -> None: ...

    def saga_late(self, saga: str) -> None:
        """The saga's deadline passed before it ended (once per instance)."""

    def sagas_active(
        self, saga: str, by_state: Mapping[str, int], *, oldest_age_s: float = 0.0
    ) -> None:
        """Unfinished instances of ``saga`` by status, as last counted."""

    def outbox_observed(self, store: str, *, backlog: int, oldest_age_s: float) -> None:
        """Unpublished outbox rows of the store, as last counted."""

    def saga_store_waited(self, outcome: str, duration_s: float) -> None:
        """A saga store write waited ``duration_s``: longer than a few seconds and went
        through (``written``), or gave up on a row lock (``lock_timeout``, tried again)."""

    def saga_early_input(self, saga: str, outcome: str) -> None:
        """An event for a saga not started yet was kept (``kept``), or applied when the
        saga started (``applied``)."""


class NoObserver:
    """The observer of a coordinator given none: every hook does nothing."""

    def saga_started(self, saga: str) -> None:
        pass

    def saga_finished(self, saga: str, status: str, duration_s: float) -> None:
        pass

    def saga_needs_attention(self, saga: str) -> None:
        pass

    def saga_step_finished(self, saga: str, step: str, outcome: str, duration_s: float) -> None:
        pass

    def saga_timeout_fired(self, saga: str, step: str) -> None:
        pass

    def saga_late(self, saga: str) -> None:
        pass

    def sagas_active(
        self, saga: str, by_state: Mapping[str, int], *, oldest_age_s: float = 0.0
    ) -> None:
        pass

    def outbox_observed(self, store: str, *, backlog: int, oldest_age_s: float) -> None:
        pass

    def saga_store_waited(self, outcome: str, duration_s: float) -> None:
        pass

    def saga_early_input(self, saga: str, outcome: str) -> None:
        pass


#: History events that settle a step, and the outcome label the metrics give them.
_OUTCOMES = {
    "completed": "succeeded",
    # an undo confirmed: its own outcome, or a compensated step would count as two successes
    "compensated": "compensated",
    "failed": "failed",
    "timed_out": "timed_out",
}
_STARTS = {"sent", "resent", "compensation_sent", "recompensation_sent", "waiting"}


def report_change(
    observer: SagaObserver, before: SagaState | None, after: SagaState, *, timer: bool = False
) -> None:
    """Tell ``observer`` what a stored transition did (from the new history lines).

    ``before`` None: the saga was started. ``timer``: a due timer caused it, so a step
    that failed in it (a wait's deadline) timed out.
    """
    name = after.name
    seen = 0 if before is None else len(before.history)
    timed_out: set[str] = set()
    for h in after.history[seen:]:
        if h.event == "late":
            observer.saga_late(name)
        elif h.event == "kept_before_start":
            observer.saga_early_input(name, "applied")
        outcome = _OUTCOMES.get(h.event)
        if h.step is None or outcome is None:
            continue
        if h.event == "timed_out" or (timer and h.event == "failed"):
            if h.step in timed_out:
                continue  # re-sent or failed after the timeout just counted
            timed_out.add(h.step)
            outcome = "timed_out"
            observer.saga_timeout_fired(name, h.step)
        began = _last_start(after, h.step, seen)
        if began is not None:
            observer.saga_step_finished(name, h.step, outcome, (h.at - began).total_seconds())
    if before is not None and before.status == after.status:
        return
    if after.terminal:
        duration = (after.updated_at - after.started_at).total_seconds()
        observer.saga_finished(name, after.status.value, duration)
    elif after.status == SagaStatus.NEEDS_ATTENTION:
        observer.saga_needs_attention(name)


def _last_start(state: SagaState, step: str, before: int) -> datetime | None:
    """When the step's latest command (or wait) began, looking back from the old history."""
    for h in reversed(state.history[:before] if before else state.history):
        if h.step == step and h.event in _STARTS:
            return h.at
    return None


def start_line(state: SagaState) -> str:
    """The coordinator's INFO line for a saga it started.

    ``saga onboarding:e-1 started (onboarding v1)``
    """
    return f"saga {state.saga_id} started ({state.name} v{state.version})"


def end_line(before: SagaState | None, after: SagaState) -> str | None:
    """The coordinator's INFO line for a saga this change ended, else None: id, definition,
    outcome, how long it ran and why it did not complete.

    ``saga onboarding:e-3 ended compensated (onboarding v1) after 1.20s: step ... failed``
    """
    if not after.terminal or (before is not None and before.status == after.status):
        return None
    seconds = (after.updated_at - after.started_at).total_seconds()
    why = f": {after.reason}" if after.reason else ""
    return (
        f"saga {after.saga_id} ended {after.status.value} ({after.name} v{after.version}) "
        f"after {seconds:.2f}s{why}"
    )
