"""The stage kinds of a saga definition: what each does, declared as data.

A :class:`Step` sends a command and awaits a reply (undone by its :class:`Compensation`),
a :class:`Parallel` group runs steps together, a :class:`Wait` awaits an external event
until a deadline, a :class:`Delay` holds the saga until a time computed from its data, and
a :class:`Choice` takes one path of several by a named function of the data. A
:class:`Deadline` is the whole saga's. :class:`sagas.definition.SagaDefinition` puts them
together and validates them (:mod:`sagas.validate`).

Example::

    Step("create_account", command=CreateAccount, success=AccountCreated,
         compensation=Compensation(DeprovisionAccount, success=AccountDeprovisioned))
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bus import Command, Event
from sagas.children import SubSaga

__all__ = [
    "NAME_PATTERN",
    "Builder",
    "Choice",
    "Chooser",
    "Compensation",
    "Deadline",
    "Delay",
    "Member",
    "Parallel",
    "PathStage",
    "Predicate",
    "Rerun",
    "Schedule",
    "Stage",
    "Step",
    "SubSaga",
    "Task",
    "Updater",
    "Wait",
]

#: What saga and step names look like (they name Mermaid states).
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")

#: Builds a command from the saga data (an instance of the definition's data model).
Builder = Callable[[Any], Command]
#: Returns the saga data updated by a reply event: ``(data, event) -> data``.
Updater = Callable[[Any, Any], Any]
#: A named predicate on the saga data; False skips the stage.
Predicate = Callable[[Any], bool]
#: ``(old data, new data) -> bool``: whether a change of the data makes a completed step
#: run again (compensated first).
Rerun = Callable[[Any, Any], bool]
#: A named function of the saga data naming the branch of a :class:`Choice` to take.
Chooser = Callable[[Any], str]
#: A named function of the saga data and the time now giving a time (timezone-aware):
#: ``(data, now) -> datetime``.
Schedule = Callable[[Any, datetime], datetime]


def _as_tuple(types: type[Event] | Sequence[type[Event]] | None) -> tuple[type[Event], ...]:
    if types is None:
        return ()
    if isinstance(types, type):
        return (types,)
    return tuple(types)


@dataclass(frozen=True, slots=True, init=False)
class Compensation:
    """The command that undoes a completed step, and the replies that confirm it.

    Example::

        Compensation(RevokeLicenses, success=LicensesRevoked, timeout=timedelta(minutes=1))

    A failure reply or a timeout re-sends it, up to ``max_attempts`` sends in all; then the
    saga goes to ``needs_attention`` (an operator fixes the cause and calls retry).
    """

    #: The compensation command class.
    command: type[Command]
    #: Builds the command from the saga data; default: the command's fields taken by name
    #: from the saga data.
    build: Builder | None
    #: Reply events meaning "undone".
    success: tuple[type[Event], ...]
    #: Reply events meaning "could not undo" (re-sent like a timeout).
    failure: tuple[type[Event], ...]
    #: How long to wait for a reply before re-sending.
    timeout: timedelta
    #: Sends in all, first included (>= 1).
    max_attempts: int

    def __init__(
        self,
        command: type[Command],
        *,
        success: type[Event] | Sequence[type[Event]],
        failure: type[Event] | Sequence[type[Event]] | None = None,
        build: Builder | None = None,
        timeout: timedelta = timedelta(minutes=1),
        max_attempts: int = 3,
    ) -> None:
        object.__setattr__(self, "command", command)
        object.__setattr__(self, "build", build)
        object.__setattr__(self, "success", _as_tuple(success))
        object.__setattr__(self, "failure", _as_tuple(failure))
        object.__setattr__(self, "timeout", timeout)
        object.__setattr__(self, "max_attempts", max_attempts)


@dataclass(frozen=True, slots=True, init=False)
class Step:
    """Send a command built from the saga data; a reply event says how it went.

    Example::

        Step("assign_licenses", command=AssignLicenses, success=LicensesGranted,
             failure=LicenseGrantFailed, update=remember_products,
             compensation=Compensation(RevokeLicenses, success=LicensesRevoked),
             timeout=timedelta(seconds=30), max_attempts=3)

    Re-send policy: no reply within ``timeout`` re-sends the command with a *new* command
    id (attempt n+1; the ids are deterministic from saga id, step and attempt) and the
    first attempt's id as its ``idempotencykey`` (a dedup handler matches it), up to
    ``max_attempts`` sends; then the step has failed and the saga compensates. A timeout
    fires only once the inputs on the topics then are applied (``sagas/fence.py``). A failure
    reply fails the step at once (it is a business answer, not a lost message).
    """

    #: Unique within the definition; lowercase ``snake_case`` (it names diagram states).
    name: str
    #: The command class sent.
    command: type[Command]
    #: Builds the command from the saga data; default: fields taken by name from the data.
    build: Builder | None
    #: Reply events meaning success (at least one).
    success: tuple[type[Event], ...]
    #: Reply events meaning failure.
    failure: tuple[type[Event], ...]
    #: ``(data, reply) -> data``: how a success reply updates the saga data; default none.
    update: Updater | None
    #: How to undo the step once completed; None when nothing needs undoing.
    compensation: Compensation | None
    #: How long to wait for a reply before re-sending.
    timeout: timedelta
    #: Sends in all, first included (>= 1).
    max_attempts: int
    #: A named predicate on the saga data; False skips the step.
    when: Predicate | None
    #: ``(data, now) -> datetime``: the step's command is not sent before then (a timer
    #: holds it, durably); None: sent when the step is reached.
    not_before: Schedule | None
    #: ``(old, new) -> bool``: an update of the saga data (``SagaDefinition.on_update``)
    #: that makes it true re-runs the step if it completed: compensated, then sent again.
    rerun_on: Rerun | None

    def __init__(
        self,
        name: str,
        *,
        command: type[Command],
        success: type[Event] | Sequence[type[Event]],
        failure: type[Event] | Sequence[type[Event]] | None = None,
        build: Builder | None = None,
        update: Updater | None = None,
        compensation: Compensation | None = None,
        timeout: timedelta = timedelta(minutes=1),
        max_attempts: int = 3,
        when: Predicate | None = None,
        not_before: Schedule | None = None,
        rerun_on: Rerun | None = None,
    ) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "command", command)
        object.__setattr__(self, "not_before", not_before)
        object.__setattr__(self, "rerun_on", rerun_on)
        object.__setattr__(self, "build", build)
        object.__setattr__(self, "success", _as_tuple(success))
        object.__setattr__(self, "failure", _as_tuple(failure))
        object.__setattr__(self, "update", update)
        object.__setattr__(self, "compensation", compensation)
        object.__setattr__(self, "timeout", timeout)
        object.__setattr__(self, "max_attempts", max_attempts)
        object.__setattr__(self, "when", when)


@dataclass(frozen=True, slots=True)
class Parallel:
    """Steps sent together; the group succeeds when all succeed.

    Example::

        Parallel("access", steps=[assign_licenses, grant_repositories])

    When one fails, the others still in flight are allowed to settle (reply or time out),
    then every completed step - in this group and before it - is compensated in reverse
    order of completion. Members may carry their own ``when=``.
    """

    #: Unique within the definition; lowercase ``snake_case``.
    name: str
    #: The member steps (plain :class:`Step` only).
    steps: Sequence[Step]
    #: A named predicate on the saga data; False skips the whole group.
    when: Predicate | None = None


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
        object.__setattr__(self, "event", _as_tuple(event))
        object.__setattr__(self, "rejected", _as_tuple(rejected))
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


@dataclass(frozen=True, slots=True, init=False)
class Task:
    """Work for a person, not a system: a task row in the saga store, completed by a form.

    Example::

        Task("assign_desk", assignee=lambda d: d.manager_email, form=DeskAssigned,
             deadline=timedelta(days=2), escalate=NotifyDeskOverdue, update=remember_desk)

    When the saga reaches it, a task row (id, saga, step, assignee, form, created, due,
    status ``open``) is written with the saga's state. ``bus tasks complete`` (or
    :func:`sagas.tasks.complete_task`) validates data against ``form``, marks the row
    completed (who, when) and queues the completion for the coordinator, which applies it
    (``update``) and goes on. Past ``deadline`` the task is ``overdue`` and ``escalate`` is
    sent once; it stays open. A cancel or a failure elsewhere cancels an open task; a
    completed one is undone by its ``compensation``, if any.
    """

    #: Unique within the definition; lowercase ``snake_case``.
    name: str
    #: Who does it: an address, or a function of the saga data giving one.
    assignee: str | Callable[[Any], str]
    #: The pydantic model (a bus Event, typically) the submitted data must be valid for.
    form: type[Any]
    #: How long after the task opens it is due (or a named ``(data, now) -> datetime``).
    deadline: timedelta | Schedule
    #: The command sent once when the task becomes overdue (None: only the flag).
    escalate: type[Command] | None
    #: Builds ``escalate`` from the saga data; default: its fields taken by name.
    build: Builder | None
    #: ``(data, form) -> data``: how the submitted form updates the saga data.
    update: Updater | None
    #: How to undo the completed task (None: nothing to undo).
    compensation: Compensation | None
    #: A named predicate on the saga data; False skips the task.
    when: Predicate | None

    def __init__(
        self,
        name: str,
        *,
        assignee: str | Callable[[Any], str],
        form: type[Any],
        deadline: timedelta | Schedule,
        escalate: type[Command] | None = None,
        build: Builder | None = None,
        update: Updater | None = None,
        compensation: Compensation | None = None,
        when: Predicate | None = None,
    ) -> None:
        for key, value in (("name", name), ("assignee", assignee), ("form", form),
                           ("deadline", deadline), ("escalate", escalate), ("build", build),
                           ("update", update), ("compensation", compensation),
                           ("when", when)):  # fmt: skip
            object.__setattr__(self, key, value)


#: What a stage holds and the state tracks: a step, a wait, a delay, a task or a child saga.
Member = Step | Wait | Delay | Task | SubSaga
#: A stage a :class:`Choice`'s branch may hold (choices do not nest).
PathStage = Step | Parallel | Wait | Delay | Task | SubSaga


@dataclass(frozen=True, slots=True, init=False)
class Choice:
    """One path among several, picked by a named function of the saga data when reached.

    Example::

        def payroll_country(data: Hire) -> str:
            return data.country

        Choice("payroll", by=payroll_country,
               branches={"us": [us_payroll], "de": [de_payroll, de_tax_id]},
               default=[manual_payroll])

    ``by`` returns a branch key; a key not in ``branches`` takes ``default`` (empty: go
    on). The key taken is kept in the state (``SagaState.branches``) and the timeline
    (``branch``); the steps of the other paths are skipped, so compensation undoes exactly
    the path taken, last completed first. A branch holds steps, groups and waits, not
    another choice.
    """

    #: Unique within the definition (with the step names); lowercase ``snake_case``.
    name: str
    #: A *named* function of the saga data returning the branch key (it labels the diagram).
    by: Chooser
    #: Branch key -> the stages of that path, run in order.
    branches: dict[str, tuple[PathStage, ...]]
    #: The path for any other key; empty by default.
    default: tuple[PathStage, ...]
    #: A named predicate on the saga data; False skips every path.
    when: Predicate | None

    def __init__(
        self,
        name: str,
        *,
        by: Chooser,
        branches: dict[str, Sequence[PathStage]],
        default: Sequence[PathStage] = (),
        when: Predicate | None = None,
    ) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "by", by)
        paths = branches.items() if isinstance(branches, dict) else ()
        object.__setattr__(self, "branches", {k: tuple(v) for k, v in paths})
        object.__setattr__(self, "default", tuple(default))
        object.__setattr__(self, "when", when)

    def path(self, key: str) -> tuple[PathStage, ...]:
        """The stages of branch ``key`` (``default`` for a key without a branch)."""
        return self.branches.get(key, self.default)

    def paths(self) -> Iterator[tuple[str | None, tuple[PathStage, ...]]]:
        """(key, stages) of every branch, then (None, default)."""
        yield from self.branches.items()
        yield None, self.default


Stage = Step | Parallel | Wait | Delay | Task | SubSaga | Choice


def steps_of(stage: PathStage) -> Iterator[Member]:
    """The members of a stage that is not a choice: a group's steps, or the stage itself."""
    if isinstance(stage, Parallel):
        yield from stage.steps
    elif isinstance(
        stage, Step | Wait | Delay | Task | SubSaga
    ):  # anything else is a problem validation reports
        yield stage
