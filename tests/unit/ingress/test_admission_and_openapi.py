"""Events against the registry, webhook mappings, and the OpenAPI document."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import jsonschema
import pytest

from bus import Event, Registry
from bus.envelope import Envelope
from bus.errors import ConfigError
from bus.ingress.admission import admit
from bus.ingress.openapi import openapi_document
from bus.ingress.problems import RefusedError
from bus.ingress.webhooks import Ingress, mapped_events

registry = Registry()
NOW = datetime(2026, 1, 1, tzinfo=UTC)


class Address(Event, type="unit.ingress.address.v1", topic="unit.ingress", registry=registry):
    city: str


class Joined(Event, type="unit.ingress.joined.v1", topic="unit.ingress", key="person_id", registry=registry):  # fmt: skip
    person_id: str
    age: int
    address: Address | None = None


def event(id_: str, type_: str = "unit.ingress.joined.v1", data: bytes = b"") -> Envelope:
    return Envelope(id_, "/t", type_, data or b'{"person_id": "p-1", "age": 30}', None, None, None)


def test_an_admitted_event_keeps_its_identity_and_gets_bus_defaults() -> None:
    [admitted] = admit([event("id-1")], registry, NOW)
    assert admitted.message == Joined(person_id="p-1", age=30)
    env = admitted.envelope
    assert (env.id, env.source, env.correlationid, env.subject) == ("id-1", "/t", "id-1", "p-1")
    assert (env.time, env.datacontenttype) == (NOW, "application/json")


def test_unknown_types_alone_are_422_and_with_invalid_data_400_listing_both() -> None:
    with pytest.raises(RefusedError) as raised:
        admit([event("1"), event("2", "unit.ingress.nope.v1")], registry, NOW)
    assert raised.value.refusal.status == 422
    with pytest.raises(RefusedError) as raised:
        admit(
            [event("1", "unit.ingress.nope.v1"), event("2", data=b'{"person_id": 1}')],
            registry,
            NOW,
        )
    refusal = raised.value.refusal
    assert refusal.status == 400
    assert sorted((e.event, e.field) for e in refusal.errors) == [
        (0, "type"),
        (1, "data.age"),
        (1, "data.person_id"),
    ]


def test_a_webhook_mapping_becomes_events_with_ids_from_the_delivery() -> None:
    ingress = Ingress()

    @ingress.webhook("/hooks/people", secret_env="PEOPLE_SECRET")
    def people(payload: dict[str, Any]) -> list[Joined]:
        return [Joined(person_id=p["id"], age=p["age"]) for p in payload["people"]]

    hook = ingress.webhooks["/hooks/people"]
    payload = {"people": [{"id": "a", "age": 1}, {"id": "b", "age": 2}]}
    events = mapped_events(hook, payload, lambda n: f"d-7.{n}", NOW)
    assert [(e.envelope.id, e.envelope.source, e.envelope.subject) for e in events] == [
        ("d-7.0", "bus://webhook/hooks/people", "a"),
        ("d-7.1", "bus://webhook/hooks/people", "b"),
    ]
    for bad in ({}, {"people": [{"id": "a", "age": "old"}]}, {"people": []}):
        with pytest.raises(RefusedError) as raised:
            mapped_events(hook, bad, lambda n: "x", NOW)
        assert raised.value.refusal.status == 422


def test_webhook_declarations_are_checked_when_made() -> None:
    ingress = Ingress()
    ingress.webhook("/hooks/a", secret_env="A")(lambda p: None)
    for path, kwargs in (
        ("/hooks/a", {}),
        ("/events", {}),
        ("hooks/b", {}),
        ("/hooks/c", {"signature": "md5"}),
    ):
        with pytest.raises(ConfigError):
            ingress.webhook(path, secret_env="A", **kwargs)


def test_the_openapi_document_has_one_schema_per_type_with_nested_models_resolvable() -> None:
    ingress = Ingress()
    ingress.webhook("/hooks/a", secret_env="A")(lambda p: None)
    doc = openapi_document(registry, webhooks=ingress.webhooks.values())
    schemas = doc["components"]["schemas"]
    assert {"unit.ingress.joined.v1", "unit.ingress.address.v1", "Address"} <= set(schemas)
    assert schemas["unit.ingress.joined.v1"]["x-bus"]["topic"] == "unit.ingress"
    event_schema = schemas["unit.ingress.joined.v1.event"]
    assert event_schema["properties"]["type"] == {"const": "unit.ingress.joined.v1"}
    refs = _refs(doc)
    assert refs
    assert all(r.removeprefix("#/components/schemas/") in schemas for r in refs)
    assert set(doc["paths"]) == {"/events", "/hooks/a"}
    assert set(doc["paths"]["/events"]["post"]["responses"]) >= {
        "202",
        "400",
        "413",
        "415",
        "422",
        "429",
        "503",
    }


def test_the_202_of_every_operation_documents_the_counts_and_the_ids() -> None:
    ingress = Ingress()
    ingress.webhook("/hooks/a", secret_env="A")(lambda p: None)
    doc = openapi_document(registry, webhooks=ingress.webhooks.values())
    for path in ("/events", "/hooks/a"):
        accepted = doc["paths"][path]["post"]["responses"]["202"]
        schema = accepted["content"]["application/json"]["schema"]
        validator = jsonschema.Draft202012Validator(schema)
        validator.validate(
            {"accepted": 3, "duplicates": 1, "ids": ["a", "b", "a"], "duplicate_ids": ["a"]}
        )
        for wrong in (
            {"accepted": 1, "duplicates": 0},  # the ids are not optional
            {"accepted": 1, "duplicates": 0, "ids": [1], "duplicate_ids": []},
            {"accepted": "1", "duplicates": 0, "ids": [], "duplicate_ids": []},
        ):
            assert not validator.is_valid(wrong), (path, wrong)


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [
            r for v in node.values() for r in _refs(v)
        ]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []
