"""Deeply nested JSON on the real broker: dead-lettered as ``invalid``, naming the depth.

Issue 16 item 8: every payload goes through pydantic-core's JSON parser, which refuses
nesting deeper than :data:`bus.codec.MAX_JSON_DEPTH` (200 levels, the top-level object
being the first) even in a field the model ignores. That limit is accepted; what is
pinned here is that such a record is dead-lettered with reason ``invalid`` and a message
that names the depth, in binary and structured mode, and that the consumer goes on. A
structured CloudEvent nested deeper than orjson re-encodes (254 levels) stopped the
worker before; it is dead-lettered the same way now.
"""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from pydantic import ConfigDict

from bus import App, Event, Runner, TopicSpec, WorkerSettings
from bus.codec import MAX_JSON_DEPTH
from bus.devbroker import DevBroker
from bus.record import OutgoingRecord, Record
from bus.transports.kafka import KafkaTransport
from tests.conftest import kafka_test_config, unique

pytestmark = pytest.mark.kafka

NOTES = unique("it.fuzz.notes")
SEEN = unique("it.fuzz.seen")


class Note(Event, type="it.fuzz.note.v1", topic=NOTES, key="key"):
    """A model that reads ``key`` only: anything else in the payload is ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    key: str


class Seen(Event, type="it.fuzz.note.seen.v1", topic=SEEN, key="key"):
    key: str


app = App(unique("deep"))


@app.handler
async def see(note: Note) -> Seen:
    return Seen(key=note.key)


def nested(levels: int) -> str:
    """A JSON array ``levels`` deep (hand-built: orjson refuses to write past 254)."""
    return "[" * levels + '"x"' + "]" * levels


def binary(key: str, extra_levels: int) -> OutgoingRecord:
    value = f'{{"key":"{key}","ignored":{nested(extra_levels)}}}'.encode()
    headers = (
        ("ce_specversion", b"1.0"),
        ("ce_id", key.encode()),
        ("ce_source", b"bus://fuzz"),
        ("ce_type", Note.bus_type.encode()),
        ("content-type", b"application/json"),
    )
    return OutgoingRecord(NOTES, key.encode(), value, headers, partition=0)


def structured(key: str, extra_levels: int) -> OutgoingRecord:
    event = (
        f'{{"specversion":"1.0","id":"{key}","source":"bus://fuzz","type":"{Note.bus_type}",'
        f'"data":{{"key":"{key}","ignored":{nested(extra_levels)}}}}}'
    )
    headers = (("content-type", b"application/cloudevents+json"),)
    return OutgoingRecord(NOTES, key.encode(), event.encode(), headers, partition=0)


async def read(transport: KafkaTransport, topic: str, expected: int) -> list[Record]:
    consumer = transport.consumer([topic], group=None)
    await consumer.start()
    got: list[Record] = []
    deadline = time.monotonic() + 60
    try:
        while len(got) < expected and time.monotonic() < deadline:
            for records in (await consumer.fetch(max_records=100, timeout_s=0.2)).values():
                got.extend(records)
    finally:
        await consumer.stop()
    return got


async def test_a_payload_nested_past_the_limit_is_dead_lettered_as_invalid_naming_the_depth(
    kafka_broker: DevBroker,
) -> None:
    config = kafka_test_config(kafka_broker.bootstrap_servers)
    transport = KafkaTransport(config)
    await transport.start()
    specs = [TopicSpec(t, partitions=1) for t in (NOTES, NOTES + ".dlq", SEEN)]
    await transport.ensure_topics(specs)
    # the payload object is level 1: an ignored field nested LIMIT - 1 more levels is fine
    at_limit = MAX_JSON_DEPTH - 1
    records = [
        binary("ok-binary", at_limit),
        structured("ok-structured", at_limit),
        binary("deep-binary", at_limit + 1),
        structured("deep-structured", at_limit + 1),
        structured("deeper-than-orjson", 300),
        binary("after", 1),
    ]
    for record in records:
        await transport.publish(record)
    runner = Runner([app], KafkaTransport(config), WorkerSettings(commit_interval_s=0.1))
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        seen = await read(transport, SEEN, expected=3)
        dead = await read(transport, NOTES + ".dlq", expected=3)
        assert all(w.running for w in runner.workers), "a deep record stopped the worker"
    finally:
        stop.set()
        await task
        await transport.stop()
    assert sorted(orjson.loads(r.value or b"")["key"] for r in seen) == [
        "after",
        "ok-binary",
        "ok-structured",
    ]
    assert sorted((r.key or b"").decode() for r in dead) == [
        "deep-binary",
        "deep-structured",
        "deeper-than-orjson",
    ]
    for letter in dead:
        headers = dict(letter.headers)
        assert headers["bus_dlq_reason"] == b"invalid"
        assert (
            f"nested more than {MAX_JSON_DEPTH} levels deep".encode()
            in (headers["bus_dlq_error_message"])
        )
