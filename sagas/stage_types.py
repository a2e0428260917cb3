"""The vocabulary the stage kinds share: the functions of the saga data they take.

A definition passes *named* functions (a name labels the diagram and the timeline): a
:data:`Predicate` for ``when=``, a :data:`Builder` for a command, an :data:`Updater` for a
reply, a :data:`Schedule` for a time, a :data:`Chooser` for a branch, a :data:`Rerun` for
an update. :func:`event_types` is how every stage keeps the event types it is given.

Example::

    def is_engineer(data: Hire) -> bool:        # a Predicate
        return data.department == "engineering"
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from bus import Command, Event

__all__ = ["Builder", "Chooser", "Predicate", "Rerun", "Schedule", "Updater", "event_types"]

#: Builds a command from the saga data (an instance of the definition's data model).
Builder = Callable[[Any], Command]
#: Returns the saga data updated by a reply event: ``(data, event) -> data``.
Updater = Callable[[Any, Any], Any]
#: A named predicate on the saga data; False skips the stage.
Predicate = Callable[[Any], bool]
#: ``(old data, new data) -> bool``: whether a change of the data makes a completed step
#: run again (compensated first).
Rerun = Callable[[Any, Any], bool]
#: A named function of the saga data naming the branch of a :class:`~sagas.choice.Choice` to take.
Chooser = Callable[[Any], str]
#: A named function of the saga data and the time now giving a time (timezone-aware):
#: ``(data, now) -> datetime``.
Schedule = Callable[[Any, datetime], datetime]


def event_types(types: type[Event] | Sequence[type[Event]] | None) -> tuple[type[Event], ...]:
    """One event type, several or none, as the tuple a stage keeps."""
    if types is None:
        return ()
    if isinstance(types, type):
        return (types,)
    return tuple(types)
