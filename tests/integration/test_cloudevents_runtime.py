"""CloudEvents strictness end to end on TestBus: what the spec rejects is dead-lettered
with reason ``decode`` (binary mode, the worker's fast path included, and structured
mode); what it allows, the spec's own examples, is handled."""

from __future__ import annotations

import orjson
import pytest

from bus import App, Event, OutgoingRecord, RetryPolicy, TestBus

TOPIC = "it.cloudevents.things"


class Thing(Event, type="it.cloudevents.thing.v1", topic=TOPIC, key="key"):
    key: str


def required(id_: str) -> list[tuple[str, bytes]]:
    return [
        ("ce_specversion", b"1.0"),
        ("ce_id", id_.encode()),
        ("ce_source", b"/mycontext"),
        ("ce_type", Thing.bus_type.encode()),
    ]


def structured(id_: str, **attributes: object) -> OutgoingRecord:
    event = {
        "specversion": "1.0",
        "id": id_,
        "source": "/mycontext",
        "type": Thing.bus_type,
        "data": {"key": id_},
        **attributes,
    }
    headers = [("content-type", b"application/cloudevents+json; charset=UTF-8")]
    return OutgoingRecord(TOPIC, key=id_.encode(), value=orjson.dumps(event), headers=headers)


def binary(id_: str, *extra: tuple[str, bytes]) -> OutgoingRecord:
    value = orjson.dumps({"key": id_})
    return OutgoingRecord(TOPIC, key=id_.encode(), value=value, headers=[*required(id_), *extra])


def app_seeing(seen: list[str]) -> App:
    app = App("it-cloudevents", retry=RetryPolicy(max_attempts=1))

    @app.handler
    async def handle(thing: Thing) -> None:
        seen.append(thing.key)

    return app


@pytest.mark.parametrize(
    "record",
    [
        binary("minutes", ("ce_time", b"2024-01-01T10:00Z")),  # the worker's plain path
        binary("space", ("ce_time", b"2024-01-01 10:00:00Z")),
        binary("offset", ("ce_time", b"2024-01-01T10:00:00+25:00")),
        binary("subject", ("ce_subject", b"")),
        binary("media", ("content-type", b"json")),
        binary("schema", ("ce_dataschema", b"/relative")),
        binary("name", ("ce_comexampleextension12", b"x")),  # 22 characters
        structured("structured-time", time="2024-01-01T10:00Z"),
        structured("structured-media", datacontenttype="json"),
    ],
    ids=lambda r: r.key.decode(),
)
async def test_an_event_the_spec_rejects_is_dead_lettered_as_decode(
    record: OutgoingRecord,
) -> None:
    seen: list[str] = []
    async with TestBus(app_seeing(seen)) as bus:
        await bus.transport.publish(record)
        await bus.publish(Thing(key="after"))  # the partition goes on past it
        await bus.drain()
        [dead] = bus.dead_letters(TOPIC)
        reasons = {k: v.decode() for k, v in dead.headers if k.startswith("bus_dlq_")}
    assert reasons["bus_dlq_reason"] == "decode"
    assert reasons["bus_dlq_error_type"].endswith("DecodeError")
    assert dead.value == record.value
    assert seen == ["after"]


async def test_the_spec_examples_attributes_are_handled() -> None:
    seen: list[str] = []
    extensions = [
        ("ce_time", b"2018-04-05T17:31:00Z"),
        ("ce_comexampleextension1", b"value"),
        ("ce_comexampleothervalue", b"5"),
        ("content-type", b"application/json"),
    ]
    async with TestBus(app_seeing(seen)) as bus:
        await bus.transport.publish(binary("binary", *extensions))
        await bus.transport.publish(
            structured(
                "structured",
                time="2018-04-05T17:31:00Z",
                comexampleextension1="value",
                comexampleothervalue=5,
                datacontenttype="application/json",
                subject=None,
            )
        )
        await bus.drain()
        assert bus.dead_letters(TOPIC) == []
    assert sorted(seen) == ["binary", "structured"]


class Echoed(Event, type="it.cloudevents.echoed.v1", topic="it.cloudevents.echoes", key="key"):
    key: str


async def test_a_message_whose_key_is_empty_is_sent_without_a_subject_and_handled() -> None:
    # a CloudEvent's subject is absent or non-empty: bus must not write ce_subject ""
    # (publisher and the emit hot path), or its own consumers would dead-letter it
    echoed: list[str] = []
    app = App("it-cloudevents-empty-key", retry=RetryPolicy(max_attempts=1))

    @app.handler
    async def echo(thing: Thing) -> Echoed:
        return Echoed(key=thing.key)

    @app.handler
    async def seen(event: Echoed) -> None:
        echoed.append(event.key)

    async with TestBus(app) as bus:
        await bus.publish(Thing(key=""))
        await bus.drain()
        assert bus.dead_letters(TOPIC) == []
        assert bus.dead_letters(Echoed.bus_topic) == []
        subjects = [e.subject for e in (*bus.envelopes(Thing), *bus.envelopes(Echoed))]
    assert echoed == [""]
    assert subjects == [None, None]
