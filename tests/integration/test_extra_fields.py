"""Fields a model does not declare, end to end on TestBus: dead-lettered by default
(``extra="forbid"``), dropped by a model that says ``extra="ignore"`` (as a class keyword
or in ``model_config``)."""

from __future__ import annotations

from pydantic import ConfigDict

from bus import App, Event, Publisher, Registry, RetryPolicy, TestBus

UPSTREAM = Registry()  # the upstream system's newer contract, which added a field


class StrictPaid(Event, type="it.extra.strict_paid.v1", topic="it.extra.strict", key="id"):
    id: str


class KeywordPaid(
    Event, type="it.extra.keyword_paid.v1", topic="it.extra.keyword", key="id", extra="ignore"
):
    id: str


class ConfigPaid(Event, type="it.extra.config_paid.v1", topic="it.extra.config", key="id"):
    model_config = ConfigDict(extra="ignore")

    id: str


def upstream_version(model: type[Event]) -> type[Event]:
    """``model`` as the upstream system now sends it: the same type with one more field."""

    class Newer(Event, type=model.bus_type, topic=model.bus_topic, key="id", registry=UPSTREAM):
        id: str
        currency: str

    return Newer


STRICT_NEWER = upstream_version(StrictPaid)
KEYWORD_NEWER = upstream_version(KeywordPaid)
CONFIG_NEWER = upstream_version(ConfigPaid)


async def test_an_extra_field_is_dead_lettered_as_invalid_by_default_naming_the_fix() -> None:
    seen: list[str] = []
    app = App("it-extra-strict", retry=RetryPolicy(max_attempts=1))

    @app.handler
    async def handle(event: StrictPaid) -> None:
        seen.append(event.id)

    async with TestBus(app) as bus:
        upstream = Publisher(bus.transport, source="bus://billing")
        await upstream.publish(STRICT_NEWER(id="i-1", currency="EUR"))
        await bus.drain()
        [dead] = bus.dead_letters(StrictPaid.bus_topic)
    reasons = {k: v.decode() for k, v in dead.headers if k.startswith("bus_dlq_")}
    assert reasons["bus_dlq_reason"] == "invalid"
    assert "field 'currency': Extra inputs are not permitted" in reasons["bus_dlq_error_message"]
    assert "extra='ignore'" in reasons["bus_dlq_error_message"]
    assert seen == []


async def test_models_that_ignore_extra_fields_handle_the_newer_upstream_events() -> None:
    seen: list[tuple[str, object]] = []
    app = App("it-extra-ignore", retry=RetryPolicy(max_attempts=1))

    @app.handler
    async def by_keyword(event: KeywordPaid) -> None:
        seen.append(("keyword", event.model_dump()))

    @app.handler
    async def by_config(event: ConfigPaid) -> None:
        seen.append(("config", event.model_dump()))

    async with TestBus(app) as bus:
        upstream = Publisher(bus.transport, source="bus://billing")
        await upstream.publish(KEYWORD_NEWER(id="k-1", currency="EUR"))
        await upstream.publish(CONFIG_NEWER(id="c-1", currency="EUR"))
        await bus.drain()
        dead = bus.dead_letters(KeywordPaid.bus_topic) + bus.dead_letters(ConfigPaid.bus_topic)
    assert dead == []
    assert sorted(seen, key=str) == [("config", {"id": "c-1"}), ("keyword", {"id": "k-1"})]
    # ignoring is per model: the default stays forbid, and the models stay frozen
    assert StrictPaid.model_config["extra"] == "forbid"
    assert (
        KeywordPaid.model_config
        == ConfigPaid.model_config
        == {
            "frozen": True,
            "extra": "ignore",
        }
    )
