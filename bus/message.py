"""Typed messages: pydantic models that declare their type name, topic and key field.

Events state facts (past tense); commands ask for work (imperative). Both are frozen
pydantic models; the class declares where it travels::

    class EmployeeHired(Event, type="hr.employee.hired.v1", topic="hr.events",
                        key="employee_id"):
        employee_id: str
        name: str

The type name ends in a version (``.v1``): a new shape gets a new name, so old and new
consumers can run side by side. The key field's value becomes the record key, so one
entity's messages stay in order on one partition.

A field the model does not declare makes the payload invalid (``extra="forbid"``, the
default: a typo or a changed contract is dead-lettered, not silently dropped). A model of
events from an upstream system that adds fields as it evolves can ignore them instead::

    class InvoicePaid(Event, type="billing.invoice.paid.v1", topic="billing.events",
                      key="invoice_id", extra="ignore"):
        invoice_id: str

(``model_config = ConfigDict(extra="ignore")`` in the class body says the same; see
docs/messages.md.)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from bus.codec import MAX_JSON_DEPTH
from bus.errors import ConfigError, PayloadInvalidError
from bus.registry import Registry, default_registry

__all__ = ["Command", "Event", "Message", "MessageKind"]

MessageKind = Literal["event", "command"]

_TYPE_NAME = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*\.v[0-9]+$")
_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


class Message(BaseModel):
    """Base of every message. Subclass :class:`Event` or :class:`Command` instead."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: CloudEvents ``type``, versioned: ``<domain>.<entity>.<fact-or-verb>.v<N>``.
    bus_type: ClassVar[str]
    #: Topic the message is published to.
    bus_topic: ClassVar[str]
    #: Name of the field whose value is the record key, or None (spread round-robin).
    bus_key: ClassVar[str | None] = None
    #: "event" or "command".
    bus_kind: ClassVar[MessageKind]
    #: The registry the class was registered in.
    bus_registry: ClassVar[Registry]

    def __init_subclass__(
        cls,
        *,
        type: str | None = None,
        topic: str | None = None,
        key: str | None = None,
        registry: Registry | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        if type is not None:
            cls.bus_type = type
        if topic is not None:
            cls.bus_topic = topic
        if key is not None:
            cls.bus_key = key
        if registry is not None:
            cls.bus_registry = registry
        elif not hasattr(cls, "bus_registry"):
            cls.bus_registry = default_registry

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if "bus_type" not in cls.__dict__:
            return  # an abstract intermediate class: nothing to register
        problems = _declaration_problems(cls)
        if problems:
            raise ConfigError(
                f"message class {cls.__qualname__} is declared wrong: " + "; ".join(problems)
            )
        cls.bus_registry.register(cls)

    def bus_key_value(self) -> str | None:
        """The value of the key field as text, or None when the type has no key."""
        if self.bus_key is None:
            return None
        value = getattr(self, self.bus_key)
        return None if value is None else str(value)

    def to_json(self) -> bytes:
        """The payload as JSON bytes (pydantic's serializer, no intermediate dict)."""
        return self.__pydantic_serializer__.to_json(self)

    @classmethod
    def from_json(cls, data: bytes) -> Message:
        """Validate JSON bytes into this model; :class:`PayloadInvalidError` names each field."""
        try:  # the validator itself: model_validate_json is one more Python frame per record
            return cls.__pydantic_validator__.validate_json(data)  # type: ignore[no-any-return]
        except ValidationError as exc:
            raise cls.invalid_payload(exc) from exc

    @classmethod
    def json_validator(cls) -> Callable[[bytes], Message]:
        """:meth:`from_json` without its frame: pydantic's ``validate_json`` of this class,
        looked up now. It raises pydantic's ``ValidationError``; :meth:`invalid_payload`
        makes of it the :class:`PayloadInvalidError` ``from_json`` raises.

        For the worker's hot path: every attribute of a model class (``from_json`` itself,
        the validator) is read through the metaclass's ``__getattr__`` hook, about 1k
        instructions each. Call it once the class is complete (not at import time: a model
        with forward references is only built on first use).

        Example::

            validate = OrderPlaced.json_validator()
            try:
                order = validate(raw)
            except ValidationError as exc:
                raise OrderPlaced.invalid_payload(exc) from exc
        """
        return cls.__pydantic_validator__.validate_json

    @classmethod
    def invalid_payload(cls, error: ValidationError) -> PayloadInvalidError:
        """The :class:`PayloadInvalidError` of a failed validation, naming each field."""
        return PayloadInvalidError(describe_validation_error(cls, error))

    @classmethod
    def bus_json_schema(cls) -> dict[str, Any]:
        """JSON Schema of the payload, with the bus declarations under ``x-bus``."""
        schema = cls.model_json_schema()
        schema["x-bus"] = {
            "type": cls.bus_type,
            "topic": cls.bus_topic,
            "key": cls.bus_key,
            "kind": cls.bus_kind,
        }
        return schema


class Event(Message):
    """A fact that happened (name it in the past tense: ``AccountCreated``)."""

    bus_kind: ClassVar[MessageKind] = "event"


class Command(Message):
    """A request for work (name it as an imperative: ``CreateAccount``)."""

    bus_kind: ClassVar[MessageKind] = "command"


def describe_validation_error(model: type[Message], exc: ValidationError) -> str:
    """One line per problem: the field path, what is wrong, and the input found."""
    parts = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "(payload)"
        what = err["msg"]
        if err["type"] == "extra_forbidden":
            what += (
                f" ({model.__qualname__} declares no such field; extra='ignore' on the "
                "class drops undeclared fields)"
            )
        if err["type"] == "json_invalid" and "recursion limit" in what:
            # pydantic says "recursion limit exceeded": say which limit, and that it is ours
            what = f"JSON nested more than {MAX_JSON_DEPTH} levels deep ({what})"
        parts.append(f"field '{where}': {what}")
    return f"{model.bus_type} ({model.__qualname__}) is invalid: " + "; ".join(parts)


def _declaration_problems(cls: type[Message]) -> list[str]:
    problems = []
    if not _TYPE_NAME.match(cls.bus_type):
        problems.append(
            f"type {cls.bus_type!r} must be lowercase dotted words ending in a version, "
            "e.g. 'hr.employee.hired.v1'"
        )
    topic = getattr(cls, "bus_topic", None)
    if topic is None:
        problems.append("no topic: declare it as class X(Event, type=..., topic='...')")
    elif not _TOPIC_NAME.match(topic):
        problems.append(f"topic {topic!r} may only use letters, digits, '.', '_' and '-'")
    if cls.bus_key is not None and cls.bus_key not in cls.model_fields:
        problems.append(
            f"key field {cls.bus_key!r} is not a field (fields: {', '.join(cls.model_fields)})"
        )
    if not hasattr(cls, "bus_kind"):
        problems.append("subclass Event or Command, not Message")
    return problems
