"""Child sagas: a :class:`SubSaga` stage starts another saga and waits for its end.

The parent does not start the child itself: it sends :class:`StartChildSaga` through its
outbox, like any command, on the ``sagas.children`` topic. A coordinator (any replica: the
child's id is the record key, so its partition's owner) consumes it and starts the child
on its normal start path (:func:`sagas.core.start_child`), with the data the stage built
and ``SagaState.parent_id``. When the child ends, its last transition sends
:class:`ChildSagaEnded` the same way; the parent's coordinator applies it to the parent
(routed by ``parent_id``): ``completed`` completes the step, any other end fails it and the
parent compensates. A parent that compensates while the child runs sends
:class:`CancelChildSaga` and waits for the child's end (it undoes what it completed); one
that compensates after the child completed sends :class:`CompensateChildSaga`: the child
undoes its completed steps, last first, ends ``compensated`` and reports that end too.
The child's first commands carry the ``traceparent`` of the start command, so parent and
child are one trace. Pure: messages and the stage only.

Example::

    SubSaga("equipment", definition=equipment, data=equipment_for)   # (data) -> EquipmentData
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bus import Command, Event

__all__ = [
    "CHILDREN_TOPIC",
    "CancelChildSaga",
    "ChildSagaEnded",
    "CompensateChildSaga",
    "StartChildSaga",
    "SubSaga",
    "child_id",
]

#: The topic of the three control messages (keyed by the child's id, or the parent's).
CHILDREN_TOPIC = "sagas.children"


class StartChildSaga(
    Command, type="bus.sagas.child.start.v1", topic=CHILDREN_TOPIC, key="child_id"
):
    """Start saga ``saga`` (its latest version) as ``child_id`` with ``data``."""

    child_id: str
    saga: str
    data: dict[str, Any]
    parent_id: str
    #: The parent's SubSaga step (named in the end report).
    step: str


class CancelChildSaga(
    Command, type="bus.sagas.child.cancel.v1", topic=CHILDREN_TOPIC, key="child_id"
):
    """Cancel a running child (its parent compensates)."""

    child_id: str
    reason: str


class CompensateChildSaga(
    Command, type="bus.sagas.child.compensate.v1", topic=CHILDREN_TOPIC, key="child_id"
):
    """Undo a child that completed (its parent compensates after it): the child runs its
    compensations over the path it took, last first, and reports ``compensated``."""

    child_id: str
    parent_id: str
    #: The parent's SubSaga step.
    step: str
    reason: str


class ChildSagaEnded(Event, type="bus.sagas.child.ended.v1", topic=CHILDREN_TOPIC, key="parent_id"):
    """A child saga reached a terminal status: reported to its parent."""

    child_id: str
    parent_id: str
    step: str
    #: completed, compensated, failed or cancelled.
    status: str
    reason: str = ""


@dataclass(frozen=True, slots=True, init=False)
class SubSaga:
    """Start another saga and wait for its end; its failure fails this stage.

    Example::

        def equipment_for(data: Onboarding) -> EquipmentData:
            return EquipmentData(employee_id=data.employee_id, laptop=data.department)

        SubSaga("equipment", definition=equipment, data=equipment_for)

    ``definition`` is the child's :class:`~sagas.definition.SagaDefinition` or its name
    (registered in the same catalog; its latest version starts). The child's id is
    ``<child name>:<parent id>/<stage name>``. No timeout: the child has its own.
    """

    #: Unique within the definition; lowercase ``snake_case``.
    name: str
    #: The child definition, or its name.
    definition: Any
    #: ``(parent data) -> child data`` (an instance of the child's data model).
    data: Callable[[Any], Any]
    #: A named predicate on the saga data; False skips the stage.
    when: Callable[[Any], bool] | None

    def __init__(
        self,
        name: str,
        *,
        definition: Any,
        data: Callable[[Any], Any],
        when: Callable[[Any], bool] | None = None,
    ) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "definition", definition)
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "when", when)

    @property
    def saga(self) -> str:
        """The child definition's name."""
        name = self.definition if isinstance(self.definition, str) else self.definition.name
        return str(name)


def child_id(saga: str, parent_id: str, step: str) -> str:
    """The id of the child saga ``saga`` that step ``step`` of ``parent_id`` starts."""
    return f"{saga}:{parent_id}/{step}"
