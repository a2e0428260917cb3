"""Which handler takes which message type, read from the handler's annotations (pure).

``async def create_account(event: EmployeeHired, ctx: Context) -> AccountCreated`` is a
route from ``hr.employee.hired.v1`` to ``create_account`` that emits
``identity.account.created.v1``. Problems are collected, not raised one by one, so a
wiring mistake lists everything wrong at once.

Example::

    route, problems = route_for(create_account, retry=RetryPolicy())
"""

from __future__ import annotations

import collections.abc
import inspect
import types
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

from bus.dedup.base import DedupStore
from bus.message import Message

if TYPE_CHECKING:  # a type only: retries.py holds the tenacity shell too, routing stays pure
    from bus.retries import RetryPolicy

__all__ = ["HandlerFunc", "Route", "emitted_types", "route_for"]

HandlerFunc = Callable[..., Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Route:
    """One handler and the message type it consumes."""

    #: The consumed message model (from the first parameter's annotation).
    message_type: type[Message]
    handler: HandlerFunc
    #: Handler name as shown in logs and dead-letter headers.
    name: str
    #: Message types the handler may return (from the return annotation); may be empty.
    emits: tuple[type[Message], ...]
    #: Whether the handler takes a second parameter (the Context).
    wants_context: bool
    retry: RetryPolicy
    #: Where completions are remembered, when the handler runs once per CloudEvent.
    dedup: DedupStore[Any] | None = None

    @property
    def topic(self) -> str:
        return self.message_type.bus_topic


def route_for(
    func: HandlerFunc,
    *,
    retry: RetryPolicy,
    name: str | None = None,
    dedup: DedupStore[Any] | None = None,
) -> tuple[Route | None, list[str]]:
    """The route ``func`` declares, or None with the problems that prevent it."""
    # The function's own name, not its qualname: it labels metrics, logs and dedup keys,
    # and "build_app.<locals>.create_account" says nothing more. App checks uniqueness.
    label: str = name or str(getattr(func, "__name__", func))
    problems: list[str] = []
    if not inspect.iscoroutinefunction(func):
        problems.append(f"handler {label} must be 'async def'")
    try:
        hints = typing.get_type_hints(func)
    except Exception as exc:  # unresolvable forward references, typos in annotations
        return None, [*problems, f"handler {label}: cannot read its annotations ({exc})"]
    params = list(inspect.signature(func).parameters.values())
    if not params or len(params) > 2:
        problems.append(f"handler {label} must take (message) or (message, ctx)")
        return None, problems
    message_type = hints.get(params[0].name)
    if not (isinstance(message_type, type) and issubclass(message_type, Message)):
        problems.append(
            f"handler {label}: annotate its first parameter with the message class it handles "
            f"(found {message_type!r})"
        )
        message_type = None
    elif not hasattr(message_type, "bus_type"):
        problems.append(f"handler {label}: {message_type.__qualname__} declares no type name")
        message_type = None
    emits, emit_problems = emitted_types(hints.get("return", type(None)))
    problems.extend(f"handler {label}: {p}" for p in emit_problems)
    if message_type is None or problems:
        return None, problems
    route = Route(
        message_type=message_type,
        handler=func,
        name=label,
        emits=emits,
        wants_context=len(params) == 2,
        retry=retry,
        dedup=dedup,
    )
    return route, []


_SEQUENCES = (list, tuple, collections.abc.Sequence, collections.abc.Iterable)


def emitted_types(annotation: Any) -> tuple[tuple[type[Message], ...], list[str]]:
    """Message types named in a return annotation: X, X | Y, list[X], None, Any."""
    if annotation is Any or annotation is None or annotation is type(None):
        return (), []
    if isinstance(annotation, type) and issubclass(annotation, Message):
        return (annotation,), []
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType) or origin in _SEQUENCES:
        found: list[type[Message]] = []
        problems: list[str] = []
        for arg in typing.get_args(annotation):
            if arg is Ellipsis:
                continue
            sub, sub_problems = emitted_types(arg)
            found.extend(t for t in sub if t not in found)
            problems.extend(sub_problems)
        return tuple(found), problems
    return (), [f"return annotation {annotation!r} is not a message type, a list of them, or None"]
