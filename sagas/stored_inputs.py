"""An input on its way into the saga store, and what the coordinator tells once it is stored.

A :class:`PendingInput` is one input for one saga: its :meth:`~PendingInput.change` is the
pure :func:`~sagas.operations.apply_input`, which the store calls in its transaction (again
after a revision conflict), and it keeps what the last try found. :class:`InputReport`
tells what was stored, after the commit: the coordinator's counters
(:class:`~sagas.coordinator_stats.CoordinatorStats`), the observer's hooks (metrics), and a
log line when a saga starts or ends, a trigger is refused or an input is set aside.

Example::

    pending = PendingInput(catalog, saga_id, given, now, record)
    [write] = await group_commit.write([(pending.saga_id, pending.change)])
    report.stored(pending, write)
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime

from bus import Record
from sagas.coordinator_stats import CoordinatorStats
from sagas.observer import SagaObserver, end_line, report_change, start_line
from sagas.operations import Applied, SagaInput, StartSaga, apply_input
from sagas.state import SagaState
from sagas.stores.base import KeepEarly, Loaded, SagaWrite, SetAside, Write
from sagas.versions import Catalog

__all__ = ["InputReport", "PendingInput"]

log = logging.getLogger("sagas.coordinator")  # the name its lines had before the module split


class PendingInput:
    """One input for one saga, and what applying it found (the last try's, after a
    revision conflict)."""

    __slots__ = ("applied", "catalog", "given", "kept", "now", "record", "saga_id")

    def __init__(
        self,
        catalog: Catalog,
        saga_id: str,
        given: SagaInput,
        now: datetime,
        record: Record | None = None,
        kept: int = 0,
    ) -> None:
        self.catalog, self.saga_id, self.given, self.now = catalog, saga_id, given, now
        #: The record the input came in (kept aside if the saga is quarantined); the
        #: set-aside input this is (its seq; 0: a live input).
        self.record, self.kept = record, kept
        self.applied = Applied()

    def change(self, stored: Loaded) -> Write | None:
        self.applied = apply_input(self.catalog, stored, self.given, self.now, record=self.record)
        write = self.applied.write
        if self.kept and isinstance(write, SagaWrite):  # applied: delete it with the write
            write = replace(write, set_aside_done=(self.kept,))
        return write


class InputReport:
    """Counts and reports stored inputs into ``stats`` and ``observer``, and the log.

    Example::

        report = InputReport(CoordinatorStats(), NoObserver())
        report.stored(pending, write)      # after the commit
    """

    def __init__(self, stats: CoordinatorStats, observer: SagaObserver) -> None:
        self.stats, self.observer = stats, observer

    def conflict(self, saga_id: str) -> None:
        self.stats.conflicts += 1

    def stored(self, p: PendingInput, write: Write | None) -> None:
        """Count and report a stored input (after the commit)."""
        applied = p.applied
        if isinstance(write, KeepEarly):
            self.stats.kept_early += 1
            self.observer.saga_early_input(write.saga_id.partition(":")[0], "kept")
            return
        if isinstance(write, SetAside):
            self.stats.set_aside += 1
            log.warning(
                "saga %s is quarantined (%s): %s set aside; fix its row, then 'bus sagas "
                "retry %s' applies it", write.saga_id, write.reason,
                "a timer" if write.timers_to_cancel else "an input", write.saga_id,
            )  # fmt: skip
            return
        if p.kept and write is not None:
            self.stats.set_aside_applied += 1
        if isinstance(p.given, StartSaga):
            if applied.refused_by is not None:
                self._refused(p.given, applied.refused_by)
            if write is not None:
                self.stats.started += 1
                self.observer.saga_started(write.state.name)
                report_change(self.observer, None, write.state)
                self._log_lifecycle(None, write.state)
            return
        if write is None:
            self.stats.unchanged += 1
            return
        self.stats.transitions += 1
        timer = p.given.fired_timer is not None
        assert isinstance(write, SagaWrite)
        report_change(self.observer, applied.before, write.state, timer=timer)
        self._log_lifecycle(applied.before, write.state)

    @staticmethod
    def _log_lifecycle(before: SagaState | None, after: SagaState) -> None:
        """One INFO line when a saga starts and one when it ends (operators follow sagas
        in the logs without a query); nothing is formatted when INFO is off."""
        if not log.isEnabledFor(logging.INFO):
            return
        if before is None:
            log.info(start_line(after))
        line = end_line(before, after)
        if line is not None:
            log.info(line)

    def _refused(self, given: StartSaga, old: SagaState) -> None:
        self.stats.refused_starts += 1
        log.warning(
            "%s %s not started: saga %s exists (%s, started by %s at %s); a saga id "
            "starts one instance only, so this trigger is ignored",
            given.definition.trigger.bus_type, given.message_id, old.saga_id,
            old.status.value, old.trigger_id, old.started_at.isoformat(),
        )  # fmt: skip
