"""bus.message + bus.registry: declared message classes and the type-name registry."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from bus.errors import (
    ConfigError,
    PayloadInvalidError,
    RecordError,
    RegistryError,
    UnknownTypeError,
)
from bus.message import Command, Event, Message
from bus.registry import Registry, default_registry


class Address(BaseModel):
    city: str
    zip: int


class ThingHappened(
    Event,
    type="unit.test_message.thing_happened.v1",
    topic="unit.test_message.things",
    key="thing_id",
):
    thing_id: str
    count: int
    note: str | None = None


class DoThing(Command, type="unit.test_message.do_thing.v2", topic="unit.test_message.commands"):
    thing_id: str
    address: Address


class SharedTopic(Event, topic="unit.test_message.shared", key="entity_id"):
    """An abstract intermediate class: no type name, so it is not registered."""

    entity_id: int


class SharedA(SharedTopic, type="unit.test_message.shared_a.v1"):
    pass


class SharedB(SharedTopic, type="unit.test_message.shared_b.v1", topic="unit.test_message.other"):
    pass


# --- declarations -----------------------------------------------------------------


def test_declared_class_carries_its_type_topic_key_and_kind() -> None:
    assert ThingHappened.bus_type == "unit.test_message.thing_happened.v1"
    assert ThingHappened.bus_topic == "unit.test_message.things"
    assert ThingHappened.bus_key == "thing_id"
    assert ThingHappened.bus_kind == "event"
    assert DoThing.bus_kind == "command"
    assert DoThing.bus_key is None


def test_declared_classes_register_in_the_default_registry() -> None:
    assert default_registry.model_for("unit.test_message.thing_happened.v1") is ThingHappened
    assert default_registry.model_for("unit.test_message.do_thing.v2") is DoThing
    assert ThingHappened.bus_registry is default_registry


def test_intermediate_class_without_type_is_not_registered_and_passes_topic_and_key_down() -> None:
    assert "bus_type" not in SharedTopic.__dict__
    assert SharedTopic not in list(default_registry)
    assert SharedA.bus_topic == "unit.test_message.shared"
    assert SharedA.bus_key == "entity_id"
    assert SharedB.bus_topic == "unit.test_message.other"
    assert default_registry.model_for("unit.test_message.shared_a.v1") is SharedA


@pytest.mark.parametrize(
    "type_name",
    [
        "unit.test_message.Thing.v1",  # uppercase
        "unit.test_message.thing",  # no version
        "unit.test_message.thing.v",  # version without number
        "unit.test_message.thing.V1",
        "unit..test_message.thing.v1",  # empty word
        ".unit.thing.v1",
        "unit thing.v1",
        "",
    ],
)
def test_bad_type_name_is_a_config_error(type_name: str) -> None:
    with pytest.raises(ConfigError, match="must be lowercase dotted words"):

        class Bad(Event, type=type_name, topic="unit.test_message.t"):
            x: int


@pytest.mark.parametrize("topic", ["has space", "", "slash/topic", "t" * 250, "tópico"])
def test_bad_topic_is_a_config_error(topic: str) -> None:
    with pytest.raises(ConfigError, match="topic"):

        class Bad(Event, type="unit.test_message.bad_topic.v1", topic=topic):
            x: int


def test_longest_legal_topic_is_accepted() -> None:
    reg = Registry([ThingHappened])

    class Long(Event, type="unit.test_message.long_topic.v1", topic="t" * 249, registry=reg):
        x: int

    assert Long.bus_topic == "t" * 249


def test_missing_topic_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no topic"):

        class NoTopic(Event, type="unit.test_message.no_topic.v1"):
            x: int


def test_unknown_key_field_is_a_config_error_listing_the_fields() -> None:
    with pytest.raises(ConfigError, match="'nope' is not a field") as info:

        class BadKey(Event, type="unit.test_message.bad_key.v1", topic="t", key="nope"):
            x: int
            y: int

    assert "x, y" in str(info.value)


def test_subclassing_message_directly_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="subclass Event or Command"):

        class Neither(Message, type="unit.test_message.neither.v1", topic="t"):
            x: int


def test_every_declaration_problem_is_listed_at_once() -> None:
    with pytest.raises(ConfigError) as info:

        class AllWrong(Event, type="Not A Type", topic="bad topic!", key="missing"):
            x: int

    message = str(info.value)
    assert "AllWrong" in message
    assert "'Not A Type'" in message
    assert "'bad topic!'" in message
    assert "'missing' is not a field" in message


def test_wrongly_declared_class_is_not_registered() -> None:
    with pytest.raises(ConfigError):

        class Unregistered(Event, type="unit.test_message.unregistered.v1", topic="bad topic"):
            x: int

    assert "unit.test_message.unregistered.v1" not in default_registry


# --- registry ----------------------------------------------------------------------


def test_class_registers_in_the_fresh_registry_passed_to_it() -> None:
    reg = Registry()

    class Isolated(Event, type="unit.test_message.isolated.v1", topic="t", registry=reg):
        x: int

    assert Isolated.bus_registry is reg
    assert "unit.test_message.isolated.v1" in reg
    assert reg.model_for("unit.test_message.isolated.v1") is Isolated
    assert "unit.test_message.isolated.v1" not in default_registry


def test_class_registers_in_a_non_empty_registry_passed_to_it() -> None:
    reg = Registry([ThingHappened])

    class Isolated2(Event, type="unit.test_message.isolated_two.v1", topic="t", registry=reg):
        x: int

    assert Isolated2.bus_registry is reg
    assert reg.model_for("unit.test_message.isolated_two.v1") is Isolated2
    assert "unit.test_message.isolated_two.v1" not in default_registry


def test_same_type_name_on_a_different_class_is_a_registry_error() -> None:
    reg = Registry()

    class First(Event, type="unit.test_message.claimed.v1", topic="t", registry=reg):
        x: int

    with pytest.raises(RegistryError, match=r"unit\.test_message\.claimed\.v1") as info:

        class Second(Event, type="unit.test_message.claimed.v1", topic="t", registry=reg):
            y: int

    assert "First" in str(info.value)
    assert "Second" in str(info.value)


def test_registry_register_rejects_a_second_class_for_a_taken_type_name() -> None:
    reg = Registry([ThingHappened])
    impostor = type(
        "Impostor",
        (),
        {"bus_type": ThingHappened.bus_type, "__module__": "elsewhere", "__qualname__": "Impostor"},
    )
    with pytest.raises(RegistryError, match="claimed by both"):
        reg.register(impostor)  # type: ignore[arg-type]
    assert reg.model_for(ThingHappened.bus_type) is ThingHappened


def test_registering_the_same_class_twice_is_harmless() -> None:
    reg = Registry([ThingHappened])
    assert reg.register(ThingHappened) is ThingHappened
    assert len(reg) == 1


def test_model_for_unknown_type_raises_unknown_type_error_listing_known_types() -> None:
    reg = Registry([ThingHappened, DoThing])
    with pytest.raises(UnknownTypeError, match=r"unit\.test_message\.never\.v1") as info:
        reg.model_for("unit.test_message.never.v1")
    assert ThingHappened.bus_type in str(info.value)
    assert DoThing.bus_type in str(info.value)
    assert info.value.reason == "unknown_type"
    assert isinstance(info.value, RecordError)


def test_registry_lookup_helpers() -> None:
    reg = Registry([ThingHappened, DoThing])
    assert reg.get(DoThing.bus_type) is DoThing
    assert reg.get("unit.test_message.never.v1") is None
    assert ThingHappened.bus_type in reg
    assert "unit.test_message.never.v1" not in reg
    assert len(reg) == 2
    assert list(reg) == sorted([ThingHappened, DoThing], key=lambda m: m.bus_type)


def test_registry_json_schemas_are_keyed_by_type_name() -> None:
    schemas = Registry([ThingHappened, DoThing]).json_schemas()
    assert list(schemas) == sorted([ThingHappened.bus_type, DoThing.bus_type])
    assert schemas[DoThing.bus_type]["x-bus"]["kind"] == "command"


# --- payloads ----------------------------------------------------------------------


def test_bus_json_schema_has_x_bus_declarations() -> None:
    schema = ThingHappened.bus_json_schema()
    assert schema["x-bus"] == {
        "type": "unit.test_message.thing_happened.v1",
        "topic": "unit.test_message.things",
        "key": "thing_id",
        "kind": "event",
    }
    assert set(schema["properties"]) == {"thing_id", "count", "note"}
    assert set(schema["required"]) == {"thing_id", "count"}


def test_messages_are_frozen() -> None:
    msg = ThingHappened(thing_id="t-1", count=1)
    with pytest.raises(ValidationError):
        msg.count = 2  # type: ignore[misc]
    assert msg.count == 1


def test_unknown_fields_are_rejected() -> None:
    with pytest.raises(ValidationError):
        ThingHappened(thing_id="t-1", count=1, surprise=True)  # type: ignore[call-arg]


def test_key_value_is_the_key_field_as_text() -> None:
    assert SharedA(entity_id=42).bus_key_value() == "42"
    assert ThingHappened(thing_id="t-9", count=0).bus_key_value() == "t-9"
    assert DoThing(thing_id="t", address=Address(city="c", zip=1)).bus_key_value() is None


@given(st.text(), st.integers(), st.none() | st.text())
def test_to_json_then_from_json_gives_the_same_message(
    thing_id: str, count: int, note: str | None
) -> None:
    msg = ThingHappened(thing_id=thing_id, count=count, note=note)
    assert ThingHappened.from_json(msg.to_json()) == msg


@pytest.mark.parametrize(
    "raw",
    [
        b'{"thing_id": "t", "count": 1, "note": null}',
        b"{not json",
        b'{"count": "many", "note": 5, "extra": 1}',
        b"[1, 2]",
    ],
)
def test_the_json_validator_and_invalid_payload_are_from_json(raw: bytes) -> None:
    def outcome(parse: Callable[[bytes], Message]) -> object:
        try:
            return parse(raw)
        except PayloadInvalidError as exc:
            return (str(exc), exc.reason)

    def by_validator(data: bytes) -> Message:
        try:
            return ThingHappened.json_validator()(data)
        except ValidationError as exc:
            raise ThingHappened.invalid_payload(exc) from exc

    assert outcome(by_validator) == outcome(ThingHappened.from_json)


def test_from_json_of_invalid_json_raises_payload_invalid_error() -> None:
    with pytest.raises(
        PayloadInvalidError, match=r"unit\.test_message\.thing_happened\.v1"
    ) as info:
        ThingHappened.from_json(b"{not json")
    assert info.value.reason == "invalid"


def test_from_json_names_each_bad_field() -> None:
    with pytest.raises(PayloadInvalidError) as info:
        ThingHappened.from_json(b'{"count": "many", "note": 5, "extra": 1}')
    message = str(info.value)
    assert "ThingHappened" in message
    for field in ("thing_id", "count", "note", "extra"):
        assert f"field '{field}'" in message


def test_from_json_names_nested_field_paths() -> None:
    with pytest.raises(PayloadInvalidError, match=r"field 'address\.zip'"):
        DoThing.from_json(b'{"thing_id": "t", "address": {"city": "c", "zip": "nine"}}')


def test_from_json_of_non_object_names_the_payload() -> None:
    with pytest.raises(PayloadInvalidError, match=r"field '\(payload\)'"):
        ThingHappened.from_json(b"[1, 2]")
