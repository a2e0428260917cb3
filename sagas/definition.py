"""The saga definition DSL: what a saga does, declared as data, validated when built.

A definition names its trigger event, its correlation key, a pydantic model for its data,
and its stages, run in order. A stage is a :class:`Step` (send a command, await a reply),
a :class:`Parallel` group of steps (all must succeed), a :class:`Wait` for an external
event until a deadline, or a :class:`Choice` of one path among several, picked by a named
function of the data. Every stage may carry ``when=``, a *named* predicate on the saga
data (its name labels the branch in the diagram)::

    def is_engineer(data: Onboarding) -> bool:
        return data.department == "engineering"

    onboarding = SagaDefinition(
        name="onboarding", version=1, trigger=EmployeeHired, correlation_key="employee_id",
        data=Onboarding, start=Onboarding.from_hire,
        stages=[
            Step("create_account", command=CreateAccount, success=AccountCreated,
                 compensation=Compensation(DeprovisionAccount, success=AccountDeprovisioned)),
            Step("grant_repositories", command=GrantRepositoryAccess,
                 success=RepositoryAccessGranted, when=is_engineer),
        ],
    )

Building a definition checks it whole and raises one :class:`bus.DefinitionError` that
lists every problem (unknown message types, duplicate step names, a step without a reply,
an event awaited by two steps, ...), so a bad definition fails at import, not on the
first message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from bus import Command, DefinitionError, Event, Message
from sagas.children import SubSaga
from sagas.choice import Choice
from sagas.deadline import Deadline
from sagas.stage_types import Schedule
from sagas.stages import NAME_PATTERN, Member, Parallel, PathStage, Stage, steps_of
from sagas.step import Compensation, Step
from sagas.task_stage import Task
from sagas.updates import Update
from sagas.waits import Delay, Wait

# The stage kinds live in modules of their own (sagas.stages names them); they are imported
# from here as well (one place to import the DSL from).
__all__ = [
    "NAME_PATTERN",
    "Choice",
    "Compensation",
    "Deadline",
    "Delay",
    "Describe",
    "Member",
    "Parallel",
    "PathStage",
    "SagaDefinition",
    "Schedule",
    "Stage",
    "Step",
    "SubSaga",
    "Task",
    "Update",
    "Wait",
    "awaited_by_step",
]

#: ``(data, state) -> sentence``: an instance told in business terms (see :mod:`sagas.story`).
Describe = Callable[[Any, Any], str]


@dataclass(frozen=True, slots=True)
class SagaDefinition:
    """A validated saga: trigger, correlation key, data model, stages and version.

    Instances record the ``version`` they started with and keep running on it; publish a
    changed definition under a new version and keep the old one registered until its
    instances finish (see :mod:`sagas.versions`).
    """

    #: Saga name, lowercase ``snake_case``; part of every saga id.
    name: str
    #: Definition version (>= 1); bump it for any change to the stages.
    version: int
    #: The event that starts an instance.
    trigger: type[Event]
    #: Field of the trigger (and of external awaited events) identifying the instance.
    correlation_key: str
    #: The pydantic model of the saga data.
    data: type[BaseModel]
    #: Builds the initial saga data from the trigger event.
    start: Callable[[Any], BaseModel]
    #: The stages, run in order.
    stages: Sequence[Stage]
    #: Events that cancel a running instance (what completed is compensated).
    cancel_on: Sequence[type[Event]] = ()
    #: Tells an instance in one business sentence from its data (the definition's model)
    #: and its :class:`~sagas.state.SagaState`, for ``bus sagas show`` and the demo; pure.
    #: None: :func:`sagas.story.story` tells the steps' outcomes instead.
    describe: Describe | None = None
    #: When the whole saga is late, and what then (None: never late).
    deadline: Deadline | None = None
    #: Update events applied to a running instance's data (:mod:`sagas.updates`).
    on_update: Sequence[Update] = ()
    #: Step name -> step, built once (members of parallel groups included).
    steps: dict[str, Member] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", tuple(self.stages))
        object.__setattr__(self, "cancel_on", tuple(self.cancel_on))
        object.__setattr__(self, "on_update", tuple(self.on_update))
        from sagas.validate import problems_of  # it needs these classes: import when used

        problems = problems_of(self)
        if problems:
            raise DefinitionError(f"saga definition {self.name!r} v{self.version}", problems)
        object.__setattr__(self, "steps", {s.name: s for s in self.iter_steps()})

    def iter_steps(self) -> Iterator[Member]:
        """Every step and wait, in declaration order, members of groups and the stages of
        every branch of a choice included."""
        for stage in self.stages:
            if isinstance(stage, Choice):
                for _, path in stage.paths():
                    for inner in path:
                        yield from steps_of(inner)
            else:
                yield from steps_of(stage)

    def saga_id_for(self, message: Message) -> str:
        """The saga id of the instance ``message`` belongs to: ``<name>:<key value>``.

        Deterministic, so a re-delivered trigger finds the instance it already started.
        """
        return f"{self.name}:{getattr(message, self.correlation_key)}"

    def consumed_types(self) -> tuple[type[Event], ...]:
        """Every event class the saga consumes: trigger, cancel events, replies, waits.

        The coordinator subscribes to their topics.
        """
        out: dict[str, type[Event]] = {self.trigger.bus_type: self.trigger}
        for t in self.outside_types():
            out.setdefault(t.bus_type, t)
        for _, types in awaited_by_step(self):
            for t in types:
                out.setdefault(t.bus_type, t)
        return tuple(out.values())

    def outside_types(self) -> tuple[type[Event], ...]:
        """Events from outside the saga, routed by the correlation key: ``cancel_on``,
        ``on_update`` and every wait's events."""
        out: list[type[Event]] = [*self.cancel_on]
        for u in self.on_update:
            out += u.event
        for s in self.iter_steps():
            if isinstance(s, Wait):
                out += [*s.event, *s.rejected]
        return tuple(out)

    def command_types(self) -> tuple[type[Command], ...]:
        """Every command class the saga sends (actions and compensations)."""
        out: dict[str, type[Command]] = {}
        for s in self.iter_steps():
            if isinstance(s, Step):
                out.setdefault(s.command.bus_type, s.command)
                if s.compensation is not None:
                    out.setdefault(s.compensation.command.bus_type, s.compensation.command)
            if isinstance(s, Task):
                for c in (s.escalate, s.compensation.command if s.compensation else None):
                    if c is not None:
                        out.setdefault(c.bus_type, c)
        if self.deadline is not None and self.deadline.escalate is not None:
            out.setdefault(self.deadline.escalate.bus_type, self.deadline.escalate)
        return tuple(out.values())

    def awaited_types(self) -> dict[str, str]:
        """Event type name -> the step awaiting it (replies, compensations and waits)."""
        out: dict[str, str] = {}
        for step, types in awaited_by_step(self):
            for t in types:
                out.setdefault(t.bus_type, step)
        return out


def awaited_by_step(d: SagaDefinition) -> Iterator[tuple[str, tuple[type[Event], ...]]]:
    """(step name, event classes it awaits): replies, compensation replies, wait events."""
    for s in d.iter_steps():
        if isinstance(s, Wait):
            yield s.name, s.event + s.rejected
        elif isinstance(s, Step):
            yield s.name, s.success + s.failure
            if s.compensation is not None:
                yield s.name, s.compensation.success + s.compensation.failure
        elif isinstance(s, Task) and s.compensation is not None:
            yield s.name, s.compensation.success + s.compensation.failure
