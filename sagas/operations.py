"""What one input does to one saga: the coordinator's operations as pure functions.

An input is a :class:`StartSaga` (a trigger) or a :class:`DecideSaga` (a reply, an
awaited or cancelling event, a due timer, an operator request). :func:`apply_input` turns
the stored saga and the input into the :class:`SagaWrite` to store (state, outbox, timers)
and an :class:`Applied` that says what changed, for the metrics and the logs. The store
calls it inside its transaction (:data:`~sagas.stores.base.Change`), again after a revision
conflict, so it must not have effects: it has none, and ``now`` is an input.

:func:`inputs_for` routes a consumed event to the sagas it concerns (see :class:`Routes`).

Example::

    routes = Routes.of(catalog)
    for saga_id, given in inputs_for(routes, envelope, message):
        applied = apply_input(catalog, await store.load(saga_id), given, now)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime

from bus import ConfigError, Envelope, Event, Message, Record, envelope_for, record_for
from sagas.children import (
    CancelChildSaga,
    ChildSagaEnded,
    CompensateChildSaga,
    StartChildSaga,
    SubSaga,
)
from sagas.core import start, start_child
from sagas.definition import SagaDefinition, awaited_by_step
from sagas.early import early_input, keeps_early
from sagas.effects import Transition
from sagas.quarantine import quarantined, set_aside
from sagas.state import SagaState
from sagas.stores.base import (
    KeepEarly,
    Loaded,
    OutboxEntry,
    SagaWrite,
    StoredSaga,
    UnreadableSaga,
    Unstarted,
    Write,
)
from sagas.triggers import Cancel, Incoming, Retry, Trigger
from sagas.versions import Catalog, decide_versioned

#: The control messages of child sagas (topic ``sagas.children``).
Control = StartChildSaga | CancelChildSaga | CompensateChildSaga | ChildSagaEnded
CONTROL = (StartChildSaga, CancelChildSaga, CompensateChildSaga, ChildSagaEnded)

#: The CloudEvents extension a handler's dedup matches instead of the id (docs/dedup.md).
_IDEMPOTENCY_KEY = "idempotencykey"

__all__ = [
    "Applied",
    "DecideSaga",
    "Routes",
    "SagaInput",
    "StartSaga",
    "apply_input",
    "command_traceparent",
    "inputs_for",
    "outbox_entries",
]


@dataclass(frozen=True, slots=True)
class StartSaga:
    """A trigger of ``definition`` (or a parent's :class:`StartChildSaga`): start its saga
    unless it exists."""

    definition: SagaDefinition
    message: Event | StartChildSaga
    #: The trigger's CloudEvents id (the saga's ``trigger_id``, its commands' causation).
    message_id: str
    #: The trigger's W3C ``traceparent``, if it carries one: its commands join that trace.
    traceparent: str | None = None
    #: The trigger's CloudEvents ``correlationid``, if it carries one (kept in the state).
    correlation_id: str | None = None


@dataclass(frozen=True, slots=True)
class DecideSaga:
    """Something for an existing saga: decided by the core on its stored state."""

    trigger: Trigger
    #: The message that caused it (the commands' ``causationid``); None for timers.
    causation_id: str | None = None
    #: The cause's W3C ``traceparent``, if any.
    traceparent: str | None = None
    #: The timer that fired (deleted with the new state).
    fired_timer: str | None = None
    #: The operator request carried out (deleted with the new state).
    request: str | None = None


SagaInput = StartSaga | DecideSaga


@dataclass(frozen=True, slots=True)
class Applied:
    """What :func:`apply_input` found and did."""

    #: What to store; None: nothing changes (a duplicate, an unknown saga, a refused start).
    #: A :class:`~sagas.stores.base.SetAside` for a quarantined saga.
    write: Write | None = None
    #: The state before (None: the saga was started, or does not exist).
    before: SagaState | None = None
    #: The core's transition (also when it changed nothing).
    transition: Transition | None = None
    #: A trigger refused: another trigger started the saga of that id (a re-hire).
    refused_by: SagaState | None = None


def apply_input(
    catalog: Catalog,
    stored: Loaded,
    given: SagaInput,
    now: datetime,
    *,
    record: Record | None = None,
) -> Applied:
    """The write ``given`` makes to the saga ``stored`` (None: not stored) at ``now``;
    ``record``: the record ``given`` came in, kept aside if the saga is quarantined."""
    if isinstance(given, StartSaga):
        return _start(stored, given, now)
    if stored is None or isinstance(stored, Unstarted):
        return Applied(_keep(catalog, stored, given.trigger, now))
    release = quarantined(stored)
    if isinstance(stored, UnreadableSaga) or (release and not isinstance(given.trigger, Retry)):
        # Kept aside until an operator's retry of the row (fixed by hand) lifts the quarantine.
        return Applied(set_aside(stored, given.trigger, now, record=record, request=given.request))
    t = decide_versioned(catalog, stored.state, given.trigger, now)
    if not t.changed and not release:
        return Applied(None, stored.state, t)
    fired = (given.fired_timer,) if given.fired_timer else ()
    write = SagaWrite(
        t.state,
        stored.revision,
        outbox_entries(t, now=now, causation_id=given.causation_id, traceparent=given.traceparent),
        t.timers_to_set,
        t.timers_to_cancel + fired,
        given.request,
        release,
        tasks_to_open=t.tasks_to_open,
        tasks_to_mark=t.tasks_to_mark,
    )
    return Applied(write, stored.state, t)


def _keep(
    catalog: Catalog, stored: Unstarted | None, trigger: Trigger, now: datetime
) -> KeepEarly | None:
    """An awaited, cancelling or update event for a saga not started yet: kept for it
    (:mod:`sagas.early`), once; anything else for a saga not there changes nothing."""
    if not isinstance(trigger, Incoming):
        return None
    name = trigger.correlation_id.partition(":")[0]
    if name not in catalog.names() or not keeps_early(catalog.latest(name), trigger.type):
        return None
    if stored is not None and any(e.message_id == trigger.message_id for e in stored.early):
        return None  # kept already
    return KeepEarly(early_input(trigger, received_at=now))


def _start(stored: Loaded, given: StartSaga, now: datetime) -> Applied:
    if isinstance(stored, UnreadableSaga):
        return Applied()  # the saga exists; whether this trigger started it cannot be read
    early = stored.early if isinstance(stored, Unstarted) else ()
    if isinstance(stored, StoredSaga):
        # The trigger came again (or another replica started it): nothing to do. Another
        # trigger with the same correlation key (a re-hire): refused, and said so.
        refused = stored.state if stored.state.trigger_id != given.message_id else None
        return Applied(refused_by=refused)
    if isinstance(given.message, StartChildSaga):
        t = start_child(
            given.definition, given.message, message_id=given.message_id, now=now, early=early
        )
    else:
        t = start(
            given.definition, given.message, message_id=given.message_id, now=now,
            correlation_id=given.correlation_id, early=early,
        )  # fmt: skip
    outbox = outbox_entries(
        t, now=now, causation_id=given.message_id, traceparent=given.traceparent
    )
    write = SagaWrite(
        t.state, 0, outbox, t.timers_to_set, t.timers_to_cancel,
        tasks_to_open=t.tasks_to_open, tasks_to_mark=t.tasks_to_mark,
        early_done=tuple(e.message_id for e in early),
    )  # fmt: skip
    return Applied(write, None, t)


def outbox_entries(
    transition: Transition,
    *,
    now: datetime,
    causation_id: str | None,
    traceparent: str | None = None,
) -> tuple[OutboxEntry, ...]:
    """The records of ``transition``'s commands, ready to store and publish; each carries a
    ``traceparent`` (:func:`command_traceparent`), and a re-send after a reply timeout the
    ``idempotencykey`` extension (:attr:`CommandToSend.idempotency_key`)."""
    state = transition.state
    source = f"bus://sagas/{state.name}"
    out = []
    for cmd in transition.commands:
        env = envelope_for(
            cmd.message,
            source=source,
            id=cmd.id,
            time=now,
            correlationid=state.saga_id,
            causationid=causation_id,
            traceparent=command_traceparent(state.saga_id, cmd.id, traceparent),
        )
        if cmd.key != cmd.id:  # a re-send after a reply timeout: the key handlers' dedup match
            env = env._replace(extensions={_IDEMPOTENCY_KEY: cmd.key})
        rec = record_for(cmd.message, env)
        out.append(
            OutboxEntry(
                cmd.id, state.saga_id, rec.topic, rec.key, rec.value or b"", tuple(rec.headers), now
            )
        )
    return tuple(out)


def command_traceparent(saga_id: str, command_id: str, cause: str | None) -> str:
    """The W3C ``traceparent`` of a saga command: in the trace of its cause when the cause
    carries one (the trigger, a reply), else in a trace named after the saga, so that the
    commands of one saga and the replies to them (handlers keep the traceparent) are one
    trace; the span id comes from the command id, the same each time it is re-decided.
    """
    trace_id = _trace_id(cause) or hashlib.sha256(saga_id.encode()).hexdigest()[:32]
    span_id = hashlib.sha256(command_id.encode()).hexdigest()[:16]
    return f"00-{trace_id}-{span_id}-01"


def _trace_id(traceparent: str | None) -> str | None:
    if traceparent is None:
        return None
    parts = traceparent.split("-")
    if len(parts) < 4 or len(parts[1]) != 32 or parts[1] == "0" * 32:
        return None
    return parts[1]


@dataclass(frozen=True, slots=True)
class Routes:
    """Which sagas a message type concerns, from the catalog's definitions (computed once).

    - a trigger type starts a saga of each definition it triggers (the latest version);
    - a reply's saga id is its envelope's ``correlationid`` (commands carry it);
    - an awaited (``Wait``) or cancelling (``cancel_on``) event names its saga by its
      correlation key.
    """

    triggers: dict[str, list[SagaDefinition]] = field(default_factory=dict)
    replies: set[str] = field(default_factory=set)
    external: dict[str, list[SagaDefinition]] = field(default_factory=dict)
    models: dict[str, type[Message]] = field(default_factory=dict)
    names: frozenset[str] = frozenset()
    #: The latest version of each saga, by name (a child saga starts on it).
    latest: dict[str, SagaDefinition] = field(default_factory=dict)

    @classmethod
    def of(cls, catalog: Catalog) -> Routes:
        latest = {n: catalog.latest(n) for n in catalog.names()}
        r = cls(names=frozenset(catalog.names()), latest=latest)
        for d in catalog:
            r.models[d.trigger.bus_type] = d.trigger
            if d is latest[d.name]:
                r.triggers.setdefault(d.trigger.bus_type, []).append(d)
            outside = list(d.outside_types())
            for t in outside:
                r.models[t.bus_type] = t
                named = r.external.setdefault(t.bus_type, [])
                if all(x.name != d.name for x in named):
                    named.append(d)
            outside_types = {t.bus_type for t in outside}
            for _, types in awaited_by_step(d):
                for t in types:
                    r.models[t.bus_type] = t
                    if t.bus_type not in outside_types:
                        r.replies.add(t.bus_type)
            children = [s for s in d.iter_steps() if isinstance(s, SubSaga)]
            for child in children:
                if child.saga not in latest:
                    raise ConfigError(
                        f"saga {d.name!r} v{d.version}: sub-saga {child.name!r} starts "
                        f"{child.saga!r}, which is not registered; add it to the catalog"
                    )
            if children:
                for control in CONTROL:
                    r.models[control.bus_type] = control
        return r

    @property
    def topics(self) -> list[str]:
        return sorted({m.bus_topic for m in self.models.values()})


def inputs_for(routes: Routes, env: Envelope, message: Message) -> list[tuple[str, SagaInput]]:
    """The (saga id, input) pairs one consumed event makes; at most one per saga."""
    tp = env.traceparent
    if isinstance(message, CONTROL):
        return _child_inputs(routes, env, message)
    assert isinstance(message, Event)
    out: list[tuple[str, SagaInput]] = [
        (d.saga_id_for(message), StartSaga(d, message, env.id, tp, env.correlationid))
        for d in routes.triggers.get(env.type, ())
    ]
    corr = env.correlationid
    done: set[str] = set()
    if env.type in routes.replies and corr and corr.split(":", 1)[0] in routes.names:
        incoming = Incoming(env.type, env.id, corr, message, env.causationid)
        out.append((corr, DecideSaga(incoming, env.id, tp)))
        done.add(corr)
    for d in routes.external.get(env.type, ()):
        saga_id = d.saga_id_for(message)
        if saga_id not in done:
            incoming = Incoming(env.type, env.id, saga_id, message, env.causationid)
            out.append((saga_id, DecideSaga(incoming, env.id, tp)))
            done.add(saga_id)
    return out


def _child_inputs(routes: Routes, env: Envelope, message: Control) -> list[tuple[str, SagaInput]]:
    """A child saga's start, cancel or undo (for the child), or its end report (for the
    parent)."""
    tp = env.traceparent
    if isinstance(message, StartChildSaga):
        definition = routes.latest.get(message.saga)
        if definition is None:  # raised: the Worker dead-letters it with the reason
            raise ConfigError(
                f"child saga {message.child_id}: no saga named {message.saga!r} is registered"
            )
        return [(message.child_id, StartSaga(definition, message, env.id, tp))]
    if isinstance(message, CancelChildSaga):
        cancel = Cancel(f"its parent compensates: {message.reason}")
        return [(message.child_id, DecideSaga(cancel, env.id, tp))]
    if isinstance(message, CompensateChildSaga):
        undo = Incoming(env.type, env.id, message.child_id, message, env.causationid)
        return [(message.child_id, DecideSaga(undo, env.id, tp))]
    incoming = Incoming(env.type, env.id, message.parent_id, message, env.causationid)
    return [(message.parent_id, DecideSaga(incoming, env.id, tp))]
