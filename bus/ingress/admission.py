"""CloudEvents read from a request -> typed messages of the registry, all or nothing (pure).

Each event's ``type`` must be registered (else 422: the sender and the bus disagree on
what exists) and its ``data`` must validate against the model (else 400, naming each field
as ``data.<path>``). Every event is checked before the request is answered. An admitted
event keeps its id, source, time and extensions; bus's rules fill in what it lacks: its
correlation id is its own id (it starts a process) and its subject is its key value.

Example::

    admitted = admit(events, registry, now)
    admitted[0].message        # EmployeeHired(employee_id='e-1', ...)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

from pydantic import ValidationError

from bus.envelope import Envelope, with_defaults
from bus.ingress.problems import FieldError, Refusal, RefusedError
from bus.message import Message
from bus.registry import Registry

__all__ = ["Admitted", "admit", "payload_errors"]


class Admitted(NamedTuple):
    """An event the ingress may publish: its typed message and the envelope it travels in."""

    message: Message
    envelope: Envelope


def admit(
    events: Sequence[Envelope],
    registry: Registry,
    now: datetime,
    *,
    indexes: Sequence[int] | None = None,
    errors: Sequence[FieldError] = (),
) -> list[Admitted]:
    """Every event as a typed message; :class:`RefusedError` with every problem otherwise:
    422 when the only problems are unknown types, 400 when any event is invalid. An event
    without a time gets ``now`` (when the ingress received it).

    ``indexes`` are the events' places in the request and ``errors`` the problems already
    found with its other events (:func:`bus.ingress.binding.read_request`): they are
    reported together with these."""
    admitted: list[Admitted] = []
    found: list[FieldError] = list(errors)
    unknown = 0
    places = range(len(events)) if indexes is None else indexes
    for index, event in zip(places, events, strict=True):
        model = registry.get(event.type)
        if model is None:
            unknown += 1
            found.append(FieldError("type", f"no message type {event.type!r} is registered", index))
            continue
        try:
            message = model.__pydantic_validator__.validate_json(event.data)
        except ValidationError as exc:
            found.extend(payload_errors(exc, index))
            continue
        admitted.append(Admitted(message, completed(event, message, now)))
    if found:
        if unknown == len(found):
            raise RefusedError(Refusal(422, "unknown event type", tuple(found)))
        raise RefusedError(Refusal(400, "invalid events", tuple(found)))
    return admitted


def payload_errors(exc: ValidationError, index: int | None) -> list[FieldError]:
    """pydantic's errors as field errors on ``data.<path>``."""
    return [
        FieldError(".".join(["data", *(str(p) for p in err["loc"])]), err["msg"], index)
        for err in exc.errors(include_url=False)
    ]


def completed(event: Envelope, message: Message, now: datetime) -> Envelope:
    """``event`` with bus's defaults: correlation id = its id, subject = the key value,
    JSON data, the time it was received."""
    subject = message.bus_key_value() if event.subject is None else event.subject
    return with_defaults(event, time=now, subject=subject)
