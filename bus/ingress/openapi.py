"""The ingress's OpenAPI 3.1 document, made from the registry: one schema per event type.

``POST /events`` takes any registered type in each content mode; the request body's
``oneOf`` lists a structured event per type (its ``data`` the type's JSON Schema, its
``type`` fixed), so client generators and schema-driven testers know every event. Each
webhook is an operation of its own. Pure: the document is a value of its inputs.

Example::

    doc = openapi_document(registry, webhooks=[], title="bus ingress")
    doc["components"]["schemas"]["hr.employee.hired.v1"]
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bus.ingress.binding import BATCH_CONTENT_TYPE
from bus.ingress.problems import PROBLEM_CONTENT_TYPE
from bus.ingress.webhooks import Webhook
from bus.registry import Registry

__all__ = ["openapi_document"]

_REFUSALS = {
    "400": "invalid events: every field error is listed",
    "401": "no bearer token, or not a valid one",
    "403": "the token may not publish a type or source of the request",
    "408": "the body did not arrive within BUS_INGRESS_BODY_TIMEOUT_S",
    "413": "the body is larger than the ingress accepts",
    "415": "not a CloudEvent, or not JSON",
    "422": "an event type is not registered",
    "429": "over the token's rate; see Retry-After",
    "503": "the broker is unreachable or the ingress is full; see Retry-After",
}


def openapi_document(
    registry: Registry, *, webhooks: Iterable[Webhook] = (), title: str = "bus ingress"
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of an ingress publishing ``registry``'s types."""
    schemas: dict[str, Any] = {"Problem": _PROBLEM}
    structured: list[dict[str, str]] = []
    for model in registry:
        # nested models become schemas of their own, referenced where OpenAPI looks
        data = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(data.pop("$defs", {}))
        data["x-bus"] = model.bus_json_schema()["x-bus"]
        schemas[model.bus_type] = data
        event_ref = f"{model.bus_type}.event"
        schemas[event_ref] = _structured_event(model.bus_type, data_ref=model.bus_type)
        structured.append({"$ref": f"#/components/schemas/{event_ref}"})
    any_event: dict[str, Any] = {"oneOf": structured} if structured else {"type": "object"}
    paths: dict[str, Any] = {"/events": {"post": _events_operation(any_event)}}
    for hook in webhooks:
        paths[hook.path] = {"post": _webhook_operation(hook)}
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": "1"},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


def _structured_event(type_name: str, *, data_ref: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["specversion", "id", "source", "type", "data"],
        "properties": {
            "specversion": {"const": "1.0"},
            "id": {"type": "string", "minLength": 1},
            "source": {"type": "string", "minLength": 1},
            "type": {"const": type_name},
            "time": {"type": "string", "format": "date-time"},
            "subject": {"type": "string"},
            "datacontenttype": {"const": "application/json"},
            "correlationid": {"type": "string"},
            "causationid": {"type": "string"},
            "traceparent": {"type": "string"},
            "data": {"$ref": f"#/components/schemas/{data_ref}"},
        },
    }


def _responses() -> dict[str, Any]:
    problem = {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    found: dict[str, Any] = {
        "202": {
            "description": "accepted: published, or a duplicate",
            # inline: a $ref name could meet a registered model's nested one
            "content": {"application/json": {"schema": _ACCEPTED}},
        }
    }
    found.update(
        {code: {"description": text, "content": problem} for code, text in _REFUSALS.items()}
    )
    return found


def _events_operation(any_event: dict[str, Any]) -> dict[str, Any]:
    return {
        "operationId": "publishEvents",
        "summary": "Publish CloudEvents (binary, structured or batched mode)",
        "requestBody": {
            "required": True,
            "content": {
                "application/cloudevents+json": {"schema": any_event},
                BATCH_CONTENT_TYPE: {"schema": {"type": "array", "items": any_event}},
                "application/json": {
                    "schema": {"type": "object"},
                    "description": "binary mode: the attributes in ce-* headers, data as the body",
                },
            },
        },
        "responses": _responses(),
    }


def _webhook_operation(hook: Webhook) -> dict[str, Any]:
    responses = _responses()
    responses["401"] = {"description": f"missing or wrong {hook.signature_header} signature"}
    for code in ("403", "429"):
        responses.pop(code)
    return {
        "operationId": "webhook" + "".join(p.capitalize() for p in hook.path.split("/") if p),
        "summary": f"Webhook mapped by {getattr(hook.mapper, '__qualname__', 'a function')}",
        "security": [],
        "parameters": [
            {
                "name": hook.signature_header,
                "in": "header",
                "required": True,
                "schema": {"type": "string"},
            }
        ],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {}}}},
        "responses": responses,
    }


#: The 202's body: the ids in request order, and those not published now (accepted before,
#: or given twice in the request).
_ACCEPTED: dict[str, Any] = {
    "type": "object",
    "required": ["accepted", "duplicates", "ids", "duplicate_ids"],
    "properties": {
        "accepted": {"type": "integer", "minimum": 0},
        "duplicates": {"type": "integer", "minimum": 0},
        "ids": {"type": "array", "items": {"type": "string"}},
        "duplicate_ids": {"type": "array", "items": {"type": "string"}},
    },
}

_PROBLEM: dict[str, Any] = {
    "type": "object",
    "required": ["title", "status"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {
                    "field": {"type": "string"},
                    "message": {"type": "string"},
                    "event": {"type": "integer", "minimum": 0},
                },
            },
        },
    },
}
