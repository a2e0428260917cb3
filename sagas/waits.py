"""The stages that hold a saga: a :class:`Wait` for an external event until a deadline,
a :class:`Delay` until a time computed from the saga data.

Example::

    Wait("manager_approval", event=AccessApproved, deadline=timedelta(days=3))
    Delay("until_week_before", until=week_before_start)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from bus import Event
from sagas.stage_types import Predicate, Schedule, Updater, event_types

__all__ = ["Delay", "Wait"]


@dataclass(frozen=True, slots=True, init=False)
class Wait:
    """Wait for an external event (a manager's approval) until a deadline.

    Example::

        Wait("manager_approval", event=AccessApproved, rejected=AccessRejected,
             deadline=timedelta(days=3), when=is_privileged)

    The awaited event reaches the saga by its correlation id or, for an event from outside
    the saga, by the definition's correlation key field (the coordinator resolves it). A
    rejection or the deadline fails the step and the saga compensates.
    """

    #: Unique within the definition; lowercase ``snake_case``.
    name: str
    #: Events meaning "go on".
    event: tuple[type[Event], ...]
    #: Events meaning "stop" (the saga compensates).
    rejected: tuple[type[Event], ...]
    #: How long to wait after the stage starts.
    deadline: timedelta
    #: ``(data, event) -> data`` for the go-on event; default none.
    update: Updater | None
    #: A named predicate on the saga data; False skips the wait.
    when: Predicate | None

    def __init__(
        self,
        name: str,
        *,
        event: type[Event] | Sequence[type[Event]],
        deadline: timedelta,
        rejected: type[Event] | Sequence[type[Event]] | None = None,
        update: Updater | None = None,
        when: Predicate | None = None,
    ) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "event", event_types(event))
        object.__setattr__(self, "rejected", event_types(rejected))
        object.__setattr__(self, "deadline", deadline)
        object.__setattr__(self, "update", update)
        object.__setattr__(self, "when", when)


@dataclass(frozen=True, slots=True)
class Delay:
    """Wait until a time computed from the saga data and the time now.

    Example::

        def week_before_start(data: Hire, now: datetime) -> datetime:
            return datetime.combine(data.start_date, time(9), UTC) - timedelta(days=5)

        Delay("until_week_before", until=week_before_start)

    A durable timer holds the saga until then (it survives restarts, like a reply
    timeout); a time already past goes on at once. A cancel or a failure elsewhere stops
    the delay (nothing to undo).
    """

    #: Unique within the definition; lowercase ``snake_case``.
    name: str
    #: A *named* ``(data, now) -> datetime`` (timezone-aware); it labels the diagram.
    until: Schedule
    #: A named predicate on the saga data; False skips the delay.
    when: Predicate | None = None
