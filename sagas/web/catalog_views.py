"""The catalog: every event and command type with its JSON Schema, who produces and
consumes it, its topic and groups; the apps' AsyncAPI document (channels, operations, Kafka
bindings; the JSON at ``/asyncapi.json``); and the live lag of every group per partition."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bus import Message, TransportError, asyncapi_document, group_lag
from sagas.definition import SagaDefinition
from sagas.web.context import CONSOLE, Console
from sagas.web.pages import render, viewer_session

__all__ = ["AsyncApiChannel", "CatalogEntry", "add_routes", "asyncapi_channels", "catalog_entries"]


@dataclass
class CatalogEntry:
    model: type[Message]
    producers: set[str] = field(default_factory=set)
    consumers: set[str] = field(default_factory=set)
    groups: set[str] = field(default_factory=set)

    @property
    def schema(self) -> str:
        return json.dumps(self.model.bus_json_schema(), indent=2)


@dataclass(frozen=True)
class AsyncApiChannel:
    """One channel of the AsyncAPI document as the catalog page lists it."""

    id: str
    address: str
    kafka: str
    messages: list[str]
    operations: list[tuple[str, str, str]]  # (action, operation id, Kafka group or "")


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/catalog", catalog_page)
    router.add_get("/asyncapi.json", asyncapi_json)
    router.add_get("/catalog/lag", lag_fragment)


def catalog_entries(console: Console) -> list[CatalogEntry]:
    """Every type the apps and the saga definitions consume or emit, by type name."""
    entries: dict[str, CatalogEntry] = {}

    def entry(model: type[Message]) -> CatalogEntry:
        return entries.setdefault(model.bus_type, CatalogEntry(model))

    for app in console.apps:
        for route in app.routes.values():
            e = entry(route.message_type)
            e.consumers.add(f"{app.name}.{route.name}")
            e.groups.add(app.group)
            for emitted in route.emits:
                entry(emitted).producers.add(f"{app.name}.{route.name}")
    for d in console.definitions.values():
        _add_saga(d, entry)
        for model in d.consumed_types():
            entry(model).groups.add(console.saga_group)
    return sorted(entries.values(), key=lambda e: e.model.bus_type)


def _add_saga(d: SagaDefinition, get: Callable[[type[Message]], CatalogEntry]) -> None:
    for model in d.consumed_types():
        get(model).consumers.add(f"saga {d.name}")
    for stage in d.iter_steps():
        command = getattr(stage, "command", None)
        if command is not None:
            get(command).producers.add(f"saga {d.name}")
        compensation = getattr(stage, "compensation", None)
        if compensation is not None:
            get(compensation.command).producers.add(f"saga {d.name}")


def asyncapi_channels(doc: dict[str, Any]) -> list[AsyncApiChannel]:
    """The channels of an AsyncAPI 3.0 ``doc`` with their messages and operations."""
    operations: dict[str, list[tuple[str, str, str]]] = {}
    for op_id, op in doc.get("operations", {}).items():
        channel = op["channel"]["$ref"].rsplit("/", 1)[-1]
        groups = op.get("bindings", {}).get("kafka", {}).get("groupId", {}).get("enum", [])
        operations.setdefault(channel, []).append((op["action"], op_id, ", ".join(groups)))
    channels = []
    for channel_id, channel in sorted(doc.get("channels", {}).items()):
        kafka = channel.get("bindings", {}).get("kafka", {})
        binding = f"topic {kafka.get('topic', channel['address'])}"
        if "partitions" in kafka:
            binding += f", {kafka['partitions']} partitions"
        names = [doc["components"]["messages"][m]["name"] for m in channel.get("messages", {})]
        channels.append(
            AsyncApiChannel(
                id=channel_id,
                address=channel["address"],
                kafka=binding,
                messages=sorted(names),
                operations=sorted(operations.get(channel_id, [])),
            )
        )
    return channels


async def catalog_page(request: web.Request) -> web.StreamResponse:
    viewer_session(request)
    console = request.app[CONSOLE]
    channels = asyncapi_channels(asyncapi_document(console.apps))
    return render(request, "catalog.html", entries=catalog_entries(console), channels=channels)


async def asyncapi_json(request: web.Request) -> web.StreamResponse:
    """The AsyncAPI 3.0 document of the apps the console was given."""
    viewer_session(request)
    return web.json_response(asyncapi_document(request.app[CONSOLE].apps))


async def lag_fragment(request: web.Request) -> web.StreamResponse:
    """The lag table alone (the page fetches it every few seconds)."""
    viewer_session(request)
    console = request.app[CONSOLE]
    rows = []
    known = True
    if console.transport is None:
        known = False
    else:
        groups = [(app.group, list(app.topics)) for app in console.apps]
        saga_topics = {
            m.bus_topic for d in console.definitions.values() for m in d.consumed_types()
        }
        if saga_topics:
            groups.append((console.saga_group, sorted(saga_topics)))
        for group, topics in groups:
            try:
                lags = await group_lag(console.transport, group, topics)
            except TransportError:
                lags = None
            if lags is None:
                known = False
                break
            rows += lags
    return render(request, "lag.html", rows=rows, known=known)
