"""An AsyncAPI 3.0 document of apps: what they consume and emit, on which topics.

Built from the apps' routes alone (pure): one channel per topic, a ``receive``
operation per handler and a ``send`` operation per type a handler may return, each
message with its payload JSON Schema (pydantic's), its CloudEvents Kafka binding headers
(``ce_*``, binary mode) and Kafka bindings (the record key, the topic's partitions, the
consumer group). Tools that read AsyncAPI (docs generators, code generators, Microcks)
then know bus's topics without reading Python.

Example::

    doc = asyncapi_document([identity_app, licensing_app], title="onboarding")
    assert doc["asyncapi"] == "3.0.0"
    print(json.dumps(doc, indent=2))

Ids (channel, message, operation) may only use ``[A-Za-z0-9_-]`` in AsyncAPI 3.0, so a
topic ``hr.events`` is the channel ``hr_events`` with ``address: hr.events``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from bus.message import Message

if TYPE_CHECKING:  # a type only: the document is built from what an App holds
    from bus.app import App

__all__ = ["ASYNCAPI_VERSION", "CLOUDEVENTS_HEADERS", "asyncapi_document"]

ASYNCAPI_VERSION = "3.0.0"
_KAFKA_BINDING = "0.5.0"
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")

#: The record headers of the CloudEvents Kafka protocol binding (binary mode) bus writes.
CLOUDEVENTS_HEADERS: dict[str, Any] = {
    "type": "object",
    "required": ["ce_specversion", "ce_id", "ce_source", "ce_type"],
    "properties": {
        "ce_specversion": {"type": "string", "const": "1.0"},
        "ce_id": {"type": "string", "description": "Message id (UUIDv7, time-sortable)."},
        "ce_source": {"type": "string", "description": "The app that emitted it (bus://app)."},
        "ce_type": {"type": "string", "description": "The versioned type name."},
        "ce_time": {"type": "string", "format": "date-time"},
        "ce_subject": {"type": "string"},
        "ce_correlationid": {
            "type": "string",
            "description": "The business process it belongs to (kept by children).",
        },
        "ce_causationid": {"type": "string", "description": "The id of the message it came from."},
        "ce_traceparent": {"type": "string", "description": "W3C trace context."},
        "content-type": {"type": "string", "const": "application/json"},
    },
}


def asyncapi_document(
    apps: Iterable[App], *, title: str = "bus", version: str = "1.0.0"
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of ``apps`` as a JSON-ready dict.

    Example::

        doc = asyncapi_document([app])
        doc["operations"]["identity__create_account__receive"]["action"]  # "receive"
    """
    apps = list(apps)
    partitions = _partitions(apps)
    doc: dict[str, Any] = {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": title,
            "version": version,
            "description": "Messages in CloudEvents 1.0 (Kafka binding, binary mode).",
        },
        "defaultContentType": "application/json",
        "channels": {},
        "operations": {},
        "components": {"messages": {}, "schemas": {}},
    }
    for app in apps:
        for route in app.routes.values():
            _add_operation(doc, app, route.name, "receive", route.message_type, partitions)
            for emitted in route.emits:
                _add_operation(doc, app, route.name, "send", emitted, partitions)
    return doc


def _add_operation(
    doc: dict[str, Any],
    app: App,
    handler: str,
    action: str,
    model: type[Message],
    partitions: dict[str, int],
) -> None:
    channel_id = _channel(doc, model.bus_topic, partitions)
    message_id = _message(doc, model)
    doc["channels"][channel_id]["messages"][message_id] = {
        "$ref": f"#/components/messages/{message_id}"
    }
    op_id = _safe_id(f"{app.name}__{handler}__{action}")
    if action == "send":
        op_id = _safe_id(f"{app.name}__{handler}__send__{model.bus_type}")
    operation: dict[str, Any] = {
        "action": action,
        "channel": {"$ref": f"#/channels/{channel_id}"},
        "messages": [{"$ref": f"#/channels/{channel_id}/messages/{message_id}"}],
        "summary": f"{app.name}.{handler} {'consumes' if action == 'receive' else 'emits'} "
        f"{model.bus_type}",
        "x-bus-app": app.name,
    }
    if action == "receive":
        operation["bindings"] = {
            "kafka": {
                "groupId": {"type": "string", "enum": [app.group]},
                "bindingVersion": _KAFKA_BINDING,
            }
        }
    doc["operations"][op_id] = operation


def _channel(doc: dict[str, Any], topic: str, partitions: dict[str, int]) -> str:
    channel_id = _safe_id(topic)
    if channel_id not in doc["channels"]:
        kafka: dict[str, Any] = {"topic": topic, "bindingVersion": _KAFKA_BINDING}
        if topic in partitions:
            kafka["partitions"] = partitions[topic]
        doc["channels"][channel_id] = {
            "address": topic,
            "messages": {},
            "bindings": {"kafka": kafka},
        }
    return channel_id


def _message(doc: dict[str, Any], model: type[Message]) -> str:
    message_id = _safe_id(model.bus_type)
    messages = doc["components"]["messages"]
    if message_id in messages:
        return message_id
    schemas = doc["components"]["schemas"]
    payload = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, schema in payload.pop("$defs", {}).items():
        schemas.setdefault(name, schema)
    key_schema: dict[str, Any] = {"type": "string"}
    if model.bus_key is not None:
        key_schema["description"] = f"The value of the payload field {model.bus_key!r}."
    else:
        key_schema = {"type": "null", "description": "No key: spread round-robin."}
    messages[message_id] = {
        "name": model.bus_type,
        "title": model.__name__,
        "summary": (model.__doc__ or "").strip().split("\n")[0] or model.bus_type,
        "contentType": "application/json",
        "headers": CLOUDEVENTS_HEADERS,
        "payload": payload,
        "bindings": {"kafka": {"key": key_schema, "bindingVersion": _KAFKA_BINDING}},
        "x-bus-kind": model.bus_kind,
    }
    return message_id


def _partitions(apps: Sequence[App]) -> dict[str, int]:
    return {spec.name: spec.partitions for app in apps for spec in app.topic_specs}


def _safe_id(name: str) -> str:
    return _ID_UNSAFE.sub("_", name)
