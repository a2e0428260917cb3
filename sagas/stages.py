"""The stages of a saga definition: the kinds, and how they group and nest.

Each kind is declared as data in a module of its own: a :class:`~sagas.step.Step` sends a
command and awaits a reply (undone by its :class:`~sagas.step.Compensation`), a
:class:`~sagas.waits.Wait` awaits an external event until a deadline, a
:class:`~sagas.waits.Delay` holds the saga until a time computed from its data, a
:class:`~sagas.task_stage.Task` waits for a person, a :class:`~sagas.children.SubSaga` runs a
child saga, and a :class:`~sagas.choice.Choice` takes one path of several by a named
function of the data. Here: the :class:`Parallel` group, which runs steps together, and the
unions the rest of the code speaks of (:data:`Member`, :data:`PathStage`, :data:`Stage`). A
:class:`~sagas.deadline.Deadline` is the whole saga's. :class:`sagas.definition.SagaDefinition`
puts them together (import the DSL from there) and validates them (:mod:`sagas.validate`).

Example::

    Parallel("access", steps=[assign_licenses, grant_repositories])
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sagas.children import SubSaga
from sagas.choice import Choice
from sagas.stage_types import Predicate
from sagas.step import Step
from sagas.task_stage import Task
from sagas.waits import Delay, Wait

__all__ = ["NAME_PATTERN", "Member", "Parallel", "PathStage", "Stage", "steps_of"]

#: What saga and step names look like (they name Mermaid states).
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")


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


#: What a stage holds and the state tracks: a step, a wait, a delay, a task or a child saga.
Member = Step | Wait | Delay | Task | SubSaga
#: A stage a :class:`Choice`'s branch may hold (choices do not nest).
PathStage = Step | Parallel | Wait | Delay | Task | SubSaga
#: Any stage of a definition.
Stage = Step | Parallel | Wait | Delay | Task | SubSaga | Choice


def steps_of(stage: PathStage) -> Iterator[Member]:
    """The members of a stage that is not a choice: a group's steps, or the stage itself."""
    if isinstance(stage, Parallel):
        yield from stage.steps
    elif isinstance(
        stage, Step | Wait | Delay | Task | SubSaga
    ):  # anything else is a problem validation reports
        yield stage
