"""Validation of a saga definition: every problem collected, reported in one error.

:class:`sagas.definition.SagaDefinition` calls :func:`problems_of` when it is built and
raises :class:`bus.DefinitionError` listing them all, so a bad definition fails at import.

Example::

    problems_of(definition)   # [] for a valid one
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel

from bus import Command, Event, Message
from sagas.definition import (
    NAME_PATTERN,
    Choice,
    Compensation,
    Delay,
    Parallel,
    SagaDefinition,
    Step,
    SubSaga,
    Task,
    Wait,
    awaited_by_step,
)

__all__ = ["problems_of"]


def _is_message(t: object, base: type[Message]) -> bool:
    return isinstance(t, type) and issubclass(t, base) and "bus_type" in t.__dict__


def _type_problems(where: str, t: object, base: type[Message]) -> list[str]:
    if _is_message(t, base):
        return []
    kind = "Event" if base is Event else "Command"
    return [f"{where}: {t!r} is not a registered bus {kind} class (declare it with type=...)"]


def _callable_problems(where: str, fn: object, *, named: bool) -> list[str]:
    if fn is None:
        return []
    if not callable(fn):
        return [f"{where}: {fn!r} is not callable"]
    if named and getattr(fn, "__name__", "<lambda>") == "<lambda>":
        return [f"{where}: use a named function, not a lambda (its name labels the diagram)"]
    return []


def _build_problems(where: str, command: type[Command], data: type[BaseModel]) -> list[str]:
    """With no ``build=``, every required command field must be a field of the data."""
    if not _is_message(command, Command):
        return []
    missing = [
        name
        for name, f in command.model_fields.items()
        if f.is_required() and name not in data.model_fields
    ]
    if missing:
        return [
            f"{where}: no build= given and the saga data lacks the command's required "
            f"field(s) {', '.join(missing)}; add them to the data model or pass build="
        ]
    return []


def _step_problems(s: Step, data: type[BaseModel]) -> list[str]:
    where = f"step {s.name!r}"
    problems = _type_problems(f"{where} command", s.command, Command)
    if not s.success:
        problems.append(f"{where}: no success reply; pass success=<Event class>")
    for t in s.success + s.failure:
        problems += _type_problems(f"{where} reply", t, Event)
    if s.build is None and isinstance(data, type):
        problems += _build_problems(where, s.command, data)
    problems += _callable_problems(f"{where} build", s.build, named=False)
    problems += _callable_problems(f"{where} update", s.update, named=False)
    problems += _callable_problems(f"{where} when", s.when, named=True)
    problems += _callable_problems(f"{where} not_before", s.not_before, named=True)
    problems += _callable_problems(f"{where} rerun_on", s.rerun_on, named=False)
    if s.timeout <= timedelta(0):
        problems.append(f"{where}: timeout must be positive, got {s.timeout}")
    if s.max_attempts < 1:
        problems.append(f"{where}: max_attempts must be >= 1, got {s.max_attempts}")
    return problems + _compensation_problems(where, s.compensation, data)


def _compensation_problems(where: str, c: Compensation | None, data: type[BaseModel]) -> list[str]:
    problems: list[str] = []
    if c is not None:
        cw = f"{where} compensation"
        problems += _type_problems(f"{cw} command", c.command, Command)
        if not c.success:
            problems.append(f"{cw}: no success reply; pass success=<Event class>")
        for t in c.success + c.failure:
            problems += _type_problems(f"{cw} reply", t, Event)
        if c.build is None and isinstance(data, type):
            problems += _build_problems(cw, c.command, data)
        if c.timeout <= timedelta(0):
            problems.append(f"{cw}: timeout must be positive, got {c.timeout}")
        if c.max_attempts < 1:
            problems.append(f"{cw}: max_attempts must be >= 1, got {c.max_attempts}")
    return problems


def _task_problems(t: Task, data: type[BaseModel]) -> list[str]:
    where = f"task {t.name!r}"
    problems: list[str] = []
    if not (isinstance(t.form, type) and issubclass(t.form, BaseModel)):
        problems.append(f"{where}: form= must be a pydantic model (a bus Event), got {t.form!r}")
    if not isinstance(t.assignee, str) and not callable(t.assignee):
        problems.append(f"{where}: assignee= must be a str or a function of the data")
    if isinstance(t.deadline, timedelta):
        if t.deadline <= timedelta(0):
            problems.append(f"{where}: deadline must be positive, got {t.deadline}")
    else:
        problems += _callable_problems(f"{where} deadline", t.deadline, named=True)
    if t.escalate is not None:
        problems += _type_problems(f"{where} escalate", t.escalate, Command)
        if t.build is None and isinstance(data, type) and not problems:
            problems += _build_problems(f"{where} escalate", t.escalate, data)
    problems += _callable_problems(f"{where} build", t.build, named=False)
    problems += _callable_problems(f"{where} update", t.update, named=False)
    problems += _callable_problems(f"{where} when", t.when, named=True)
    return problems + _compensation_problems(where, t.compensation, data)


def _wait_problems(w: Wait) -> list[str]:
    where = f"wait {w.name!r}"
    problems = [] if w.event else [f"{where}: no event to wait for; pass event=<Event class>"]
    for t in w.event + w.rejected:
        problems += _type_problems(f"{where} event", t, Event)
    if w.deadline <= timedelta(0):
        problems.append(f"{where}: deadline must be positive, got {w.deadline}")
    problems += _callable_problems(f"{where} update", w.update, named=False)
    problems += _callable_problems(f"{where} when", w.when, named=True)
    return problems


def problems_of(d: SagaDefinition) -> list[str]:
    """Every problem of ``d``, each naming the step or field and the fix."""
    problems: list[str] = []
    if not NAME_PATTERN.match(d.name):
        problems.append(f"name {d.name!r} must be lowercase snake_case, e.g. 'onboarding'")
    if d.version < 1:
        problems.append(f"version must be >= 1, got {d.version}")
    problems += _type_problems("trigger", d.trigger, Event)
    if _is_message(d.trigger, Event) and d.correlation_key not in d.trigger.model_fields:
        problems.append(
            f"correlation_key {d.correlation_key!r} is not a field of the trigger "
            f"{d.trigger.__qualname__} (fields: {', '.join(d.trigger.model_fields)})"
        )
    if not (isinstance(d.data, type) and issubclass(d.data, BaseModel)):
        problems.append(f"data: {d.data!r} is not a pydantic model class")
    problems += _callable_problems("start", d.start, named=False)
    for t in d.cancel_on:
        problems += _type_problems("cancel_on", t, Event)
    for u in d.on_update:
        if not u.event:
            problems.append("on_update: an Update without events")
        for t in u.event:
            problems += _type_problems("on_update", t, Event)
        problems += _callable_problems("on_update apply", u.apply, named=True)
    if d.deadline is not None:
        dl = d.deadline
        problems += _callable_problems("deadline at", dl.at, named=True)
        if dl.escalate is not None:
            problems += _type_problems("deadline escalate", dl.escalate, Command)
            if dl.build is None and isinstance(d.data, type):
                problems += _build_problems("deadline escalate", dl.escalate, d.data)
        problems += _callable_problems("deadline build", dl.build, named=False)
    if not d.stages:
        problems.append("no stages: a saga needs at least one Step, Parallel or Wait")
    names: list[str] = []
    for stage in d.stages:
        if isinstance(stage, Choice):
            problems += _choice_problems(stage, d, names)
        else:
            problems += _stage_problems(stage, d, names)
    for n in names:
        if not isinstance(n, str) or not NAME_PATTERN.match(n):
            problems.append(f"step name {n!r} must be lowercase snake_case")
    for n in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"step name {n!r} is used {names.count(n)} times; names must be unique")
    problems += _ambiguity_problems(d)
    problems += _routing_problems(d)
    return problems


def _stage_problems(stage: object, d: SagaDefinition, names: list[str]) -> list[str]:
    """The problems of one stage (not a choice); its names are added to ``names``."""
    problems: list[str] = []
    if isinstance(stage, Parallel):
        names.append(stage.name)
        problems += _callable_problems(f"group {stage.name!r} when", stage.when, named=True)
        if not stage.steps:
            problems.append(f"group {stage.name!r}: no steps")
        for member in stage.steps:
            if not isinstance(member, Step):
                problems.append(
                    f"group {stage.name!r}: {member!r} is not a Step "
                    "(waits and groups cannot nest in a group)"
                )
                continue
            names.append(member.name)
            problems += _step_problems(member, d.data)
    elif isinstance(stage, Step):
        names.append(stage.name)
        problems += _step_problems(stage, d.data)
    elif isinstance(stage, Wait):
        names.append(stage.name)
        problems += _wait_problems(stage)
    elif isinstance(stage, Task):
        names.append(stage.name)
        problems += _task_problems(stage, d.data)
    elif isinstance(stage, Delay):
        names.append(stage.name)
        where = f"delay {stage.name!r}"
        if stage.until is None:
            problems.append(f"{where}: no until=; pass a named (data, now) -> datetime")
        problems += _callable_problems(f"{where} until", stage.until, named=True)
        problems += _callable_problems(f"{where} when", stage.when, named=True)
    elif isinstance(stage, SubSaga):
        names.append(stage.name)
        where = f"sub-saga {stage.name!r}"
        if not isinstance(stage.definition, str | SagaDefinition):
            problems.append(f"{where}: definition= is not a SagaDefinition nor a saga name")
        problems += _callable_problems(f"{where} data", stage.data, named=False)
        problems += _callable_problems(f"{where} when", stage.when, named=True)
    else:
        problems.append(
            f"stage {stage!r} is not a Step, Parallel, Wait, Delay, Task, SubSaga or Choice"
        )
    return problems


def _choice_problems(c: Choice, d: SagaDefinition, names: list[str]) -> list[str]:
    where = f"choice {c.name!r}"
    names.append(c.name)
    problems = _callable_problems(f"{where} by", c.by, named=True)
    problems += _callable_problems(f"{where} when", c.when, named=True)
    if c.by is None:
        problems.append(f"{where}: no by=; pass a named function of the data")
    if not c.branches:
        problems.append(f"{where}: no branches; pass branches={{key: [stages]}}")
    for key, path in c.paths():
        label = f"{where} default" if key is None else f"{where} branch {key!r}"
        if key is not None and not (isinstance(key, str) and key):
            problems.append(f"{label}: branch keys must be non-empty strings")
        for stage in path:
            if isinstance(stage, Choice):
                problems.append(f"{label}: choice {stage.name!r} cannot nest in a choice")
                continue
            problems += _stage_problems(stage, d, names)
    return problems


def _routing_problems(d: SagaDefinition) -> list[str]:
    """Events from outside the saga (waits, cancels) carry no saga correlationid; the
    coordinator finds their instance by the correlation key, so they must have it."""
    outside = [("cancel_on", t) for t in d.cancel_on]
    outside += [("on_update", t) for u in d.on_update for t in u.event]
    outside += [
        (f"wait {s.name!r}", t)
        for s in d.iter_steps()
        if isinstance(s, Wait)
        for t in s.event + s.rejected
    ]
    return [
        f"{where}: {t.__qualname__} has no field {d.correlation_key!r} (the correlation key), "
        "so it cannot be routed to its saga; add the field"
        for where, t in outside
        if _is_message(t, Event) and d.correlation_key not in t.model_fields
    ]


def _ambiguity_problems(d: SagaDefinition) -> list[str]:
    """An event type may be awaited in one place only, or a reply could not be routed."""
    seen: dict[str, str] = {}
    problems = []
    cancel = {t.bus_type for t in d.cancel_on if _is_message(t, Event)}
    updates = [t.bus_type for u in d.on_update for t in u.event if _is_message(t, Event)]
    for name in sorted({u for u in updates if updates.count(u) > 1 or u in cancel}):
        problems.append(f"event {name} is an update more than once, or also cancels the saga")
    cancel |= set(updates)  # an update awaited by a step could not be routed either
    for step, types in awaited_by_step(d):
        for t in types:
            if not _is_message(t, Event):
                continue
            if t.bus_type in cancel:
                problems.append(
                    f"step {step!r} awaits {t.bus_type}, which also cancels or updates the saga"
                )
            other = seen.setdefault(t.bus_type, step)
            if other != step:
                problems.append(
                    f"event {t.bus_type} is awaited by both {other!r} and {step!r}; "
                    "give each step its own reply type"
                )
    return problems
