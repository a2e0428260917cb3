"""Time from the data: the mechanics of delays and held steps, under :class:`sagas.run.Run`.

A :class:`~sagas.waits.Delay` holds the saga until a time computed from its data; a
step's ``not_before`` holds its command the same way; both are durable timers
(:meth:`Draft.arm`). :mod:`sagas.updates` computes these times again when the data
changes. Pure: no I/O, no clock (``now`` is given).

Example::

    at = run.time_of(spec.until, spec.name)        # (data, now) -> datetime, checked
"""

from __future__ import annotations

from datetime import datetime

from bus import ConfigError
from sagas.draft import Draft
from sagas.stage_types import Schedule
from sagas.state import StepState, StepStatus
from sagas.step import Step
from sagas.waits import Delay

__all__ = ["Timing"]


class Timing(Draft):
    """Delays and held steps on a :class:`Draft` (the flow around them is ``Run``'s)."""

    def time_of(self, schedule: Schedule, name: str, since: datetime | None = None) -> datetime:
        """``schedule`` of the data; ``since``: the ``now`` it is given (when the stage was
        reached, for a re-plan), default now."""
        at = schedule(self.data, since or self.now)
        if not isinstance(at, datetime) or at.tzinfo is None:
            raise ConfigError(
                f"saga {self.d.name!r}: {schedule.__name__} for {name!r} returned {at!r}, "
                "expected a timezone-aware datetime"
            )
        return at

    def start_delay(self, st: StepState, spec: Delay) -> None:
        """Hold the saga until ``spec.until`` (a durable timer), or go on if it passed."""
        at = self.time_of(spec.until, spec.name)
        st = self.own(st.name)
        st.started_at = self.now
        st.attempts = 1
        if at <= self.now:
            self.log("waiting", st.name, f"until {at:%Y-%m-%dT%H:%M:%SZ} ({spec.until.__name__})")
            self.delay_done(st, "the time had passed")
            return
        st.status = StepStatus.RUNNING
        self.arm(st, "delay", 1, at)
        self.log("waiting", st.name, f"until {at:%Y-%m-%dT%H:%M:%SZ} ({spec.until.__name__})")

    def delay_done(self, st: StepState, why: str) -> None:
        st = self.own(st.name)
        st.status = StepStatus.COMPLETED
        st.completed_at = self.now
        self.s.completions += 1
        st.completed_seq = self.s.completions
        self.log("completed", st.name, why)

    def hold(self, st: StepState, at: datetime, spec: Step) -> None:
        """A step whose ``not_before`` is still ahead: running, no command yet (attempts 0);
        a durable timer sends it then."""
        st = self.own(st.name)
        st.status = StepStatus.RUNNING
        st.started_at = self.now  # the ``now`` its not_before is computed again with
        self.arm(st, "not_before", 1, at)
        name = spec.not_before.__name__ if spec.not_before else "not_before"
        self.log("scheduled", st.name, f"not before {at:%Y-%m-%dT%H:%M:%SZ} ({name})")
