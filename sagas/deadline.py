"""The saga's :class:`Deadline`: when a whole saga is late, and what happens then.

Example::

    SagaDefinition(..., deadline=Deadline(at=start_day, escalate=NotifyLateOnboarding))
"""

from __future__ import annotations

from dataclasses import dataclass

from bus import Command
from sagas.stage_types import Builder, Schedule

__all__ = ["Deadline"]


@dataclass(frozen=True, slots=True, init=False)
class Deadline:
    """When a whole saga is late, and what happens then.

    Example::

        def start_day(data: Hire, now: datetime) -> datetime:
            return datetime.combine(data.start_date, time(9), UTC)

        SagaDefinition(..., deadline=Deadline(at=start_day, escalate=NotifyLateOnboarding))

    ``at`` is computed from the data when the saga starts (``now`` = its start); a durable
    timer fires then. If the saga has not ended, it is marked ``late`` (state, timeline,
    ``bus sagas list`` data, ``bus_sagas_late_total``), the ``escalate`` command is sent
    once (no reply awaited), and - only with ``compensate=True`` - a running saga stops and
    undoes what completed (cause ``deadline``). Otherwise it goes on, late.
    """

    #: ``(data, now) -> datetime`` (timezone-aware), a *named* function.
    at: Schedule
    #: The command sent when the deadline passes (None: only the flag and the metric).
    escalate: type[Command] | None
    #: Builds it from the saga data; default: its fields taken by name from the data.
    build: Builder | None
    #: True: a running saga compensates when late; False (default): it goes on.
    compensate: bool

    def __init__(
        self,
        *,
        at: Schedule,
        escalate: type[Command] | None = None,
        build: Builder | None = None,
        compensate: bool = False,
    ) -> None:
        object.__setattr__(self, "at", at)
        object.__setattr__(self, "escalate", escalate)
        object.__setattr__(self, "build", build)
        object.__setattr__(self, "compensate", compensate)
