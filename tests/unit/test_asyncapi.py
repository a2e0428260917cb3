"""bus/asyncapi.py: the document validates against the official AsyncAPI 3.0 schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema

from bus import App, TopicSpec
from bus.asyncapi import asyncapi_document
from handlers.hr.contracts import EmployeeHired
from handlers.identity.contracts import IdentityAccountCreated
from sagas.demo import Systems

SCHEMA = Path(__file__).parent.parent / "asyncapi" / "asyncapi-3.0.0.schema.json"


def _validate(doc: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator(schema).validate(doc)


def _identity_app() -> App:
    app = App("identity", group="identity-group", topics=(TopicSpec("hr.events", partitions=6),))

    @app.handler
    async def create_account(event: EmployeeHired) -> IdentityAccountCreated:
        raise NotImplementedError

    return app


def test_document_of_the_demo_apps_is_valid_asyncapi_3() -> None:
    doc = asyncapi_document([*Systems().apps(), _identity_app()], title="onboarding")
    _validate(doc)
    assert doc["asyncapi"] == "3.0.0"
    assert len(doc["operations"]) >= 6


def test_a_handler_has_a_receive_operation_with_its_group_and_a_send_per_emitted_type() -> None:
    doc = asyncapi_document([_identity_app()])
    receive = doc["operations"]["identity__create_account__receive"]
    assert receive["action"] == "receive"
    assert receive["channel"] == {"$ref": "#/channels/hr_events"}
    assert receive["bindings"]["kafka"]["groupId"]["enum"] == ["identity-group"]
    sends = [op for op in doc["operations"].values() if op["action"] == "send"]
    assert [s["summary"] for s in sends] == [
        f"identity.create_account emits {IdentityAccountCreated.bus_type}"
    ]


def test_a_channel_is_a_topic_with_its_partitions_and_messages_carry_cloudevents_headers() -> None:
    doc = asyncapi_document([_identity_app()])
    channel = doc["channels"]["hr_events"]
    assert channel["address"] == "hr.events"
    assert channel["bindings"]["kafka"]["partitions"] == 6
    message = doc["components"]["messages"][EmployeeHired.bus_type.replace(".", "_")]
    assert message["name"] == EmployeeHired.bus_type
    assert {"ce_id", "ce_type", "ce_correlationid"} <= set(message["headers"]["properties"])
    assert message["payload"]["properties"]["employee_id"]["type"] == "string"
    assert "employee_id" in message["bindings"]["kafka"]["key"]["description"]


def test_an_invalid_document_is_refused_by_the_schema() -> None:
    doc = asyncapi_document([_identity_app()])
    doc["operations"]["identity__create_account__receive"]["action"] = "consume"
    try:
        _validate(doc)
    except jsonschema.ValidationError:
        return
    raise AssertionError("the schema accepted action 'consume'")
