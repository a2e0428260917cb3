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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

from bus.dedup.base import DedupStore
from bus.errors import HandlerResultError
from bus.message import Message

if TYPE_CHECKING:  # a type only: retries.py holds the tenacity shell too, routing stays pure
    from bus.retries import RetryPolicy

__all__ = ["HandlerFunc", "Route", "as_messages", "batch_routes_for", "emitted_types", "route_for"]

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
    #: A batch handler (``App.batch_handler``): it takes a lane's run of consecutive
    #: messages routed to it, as a list, and its second parameter is a ``BatchContext``.
    batch: bool = False
    #: Called with the message alone, once per record, with no transaction around it: the
    #: worker's cheapest path (no Context; no envelope for a record bus wrote). Derived.
    plain: bool = field(init=False)

    def __post_init__(self) -> None:
        # a field, not a property: the worker reads it per record
        plain = self.dedup is None and not self.wants_context and not self.batch
        object.__setattr__(self, "plain", plain)

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


def batch_routes_for(
    func: HandlerFunc,
    *,
    retry: RetryPolicy,
    name: str | None = None,
    types: Sequence[type[Message]] | None = None,
) -> tuple[list[Route], list[str]]:
    """The routes of a batch handler, one per message type its list parameter names.

    ``async def f(batch: list[A | B], ctx: BatchContext) -> list[C]`` routes A and B to
    ``f``; consecutive records of a partition routed to it arrive together. ``types``
    replaces the annotation when the classes are known only at run time.
    """
    label: str = name or str(getattr(func, "__name__", func))
    problems: list[str] = []
    if not inspect.iscoroutinefunction(func):
        problems.append(f"batch handler {label} must be 'async def'")
    try:
        hints = typing.get_type_hints(func)
    except Exception as exc:
        return [], [*problems, f"batch handler {label}: cannot read its annotations ({exc})"]
    params = list(inspect.signature(func).parameters.values())
    if not params or len(params) > 2:
        return [], [*problems, f"batch handler {label} must take (batch) or (batch, ctx)"]
    annotation = hints.get(params[0].name)
    if types is not None:
        types_ = [t for t in types if isinstance(t, type) and issubclass(t, Message)]
        found_problems = not types_ or len(types_) != len(types)
        annotation = types
    else:
        types_, found_problems = _batch_types(annotation)
    if found_problems:
        problems.append(
            f"batch handler {label}: annotate its first parameter as list[Message class] or "
            f"list[A | B] (found {annotation!r})"
        )
    emits, emit_problems = emitted_types(hints.get("return", type(None)))
    problems.extend(f"batch handler {label}: {p}" for p in emit_problems)
    if problems:
        return [], problems
    routes = [
        Route(
            message_type=t,
            handler=func,
            name=label,
            emits=emits,
            wants_context=len(params) == 2,
            retry=retry,
            batch=True,
        )
        for t in types_
    ]
    return routes, []


def _batch_types(annotation: Any) -> tuple[list[type[Message]], bool]:
    """The message classes of ``list[X]`` / ``Sequence[X | Y]``; True if it is not that."""
    if typing.get_origin(annotation) not in _SEQUENCES:
        return [], True
    (item,) = typing.get_args(annotation) or (None,)
    members = (
        typing.get_args(item) if typing.get_origin(item) in (Union, types.UnionType) else (item,)
    )
    found = [
        m
        for m in members
        if isinstance(m, type) and issubclass(m, Message) and hasattr(m, "bus_type")
    ]
    return found, not found or len(found) != len(members)


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


def as_messages(result: object, handler: str) -> list[Message]:
    """A handler's result as a list of messages, or HandlerResultError naming the fix."""
    if isinstance(result, Message):
        return [result]
    if result is None:
        return []
    if isinstance(result, list | tuple):
        bad = [type(m).__name__ for m in result if not isinstance(m, Message)]
        if not bad:
            return list(result)
    raise HandlerResultError(
        f"handler {handler} returned {type(result).__name__}; return a Message, a list of "
        "them, or None"
    )
