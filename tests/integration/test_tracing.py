"""OpenTelemetry spans per handled message, and trace context through a chain of handlers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from bus import App, Event, TestBus, WorkerSettings
from bus import tracing as bus_tracing


class Asked(Event, type="it.tracing.asked.v1", topic="it.tracing.asked", key="key"):
    key: str


class Answered(Event, type="it.tracing.answered.v1", topic="it.tracing.answered", key="key"):
    key: str


class Noted(Event, type="it.tracing.noted.v1", topic="it.tracing.noted", key="key"):
    key: str


def chain() -> list[App]:
    first, second = App("it-tracing-first"), App("it-tracing-second")

    @first.handler
    async def answer(asked: Asked) -> Answered:
        return Answered(key=asked.key)

    @second.handler
    async def note(answered: Answered) -> Noted:
        return Noted(key=answered.key)

    return [first, second]


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    # The global provider can be set once per process: swap the private slot instead.
    previous = trace._TRACER_PROVIDER
    trace._TRACER_PROVIDER = provider
    try:
        yield exporter
    finally:
        trace._TRACER_PROVIDER = previous


async def test_each_hop_is_a_consumer_span_in_one_trace_and_outputs_carry_its_context(
    exporter: InMemorySpanExporter,
) -> None:
    upstream = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    async with TestBus(*chain()) as bus:
        await bus.publish(Asked(key="k"), traceparent=upstream)
        await bus.drain()
        answered = bus.envelopes(Answered)[0]
        noted = bus.envelopes(Noted)[0]
    spans = {s.name: s for s in exporter.get_finished_spans()}
    first, second = spans["answer process"], spans["note process"]
    trace_id = int("4bf92f3577b34da6a3ce929d0e0e4736", 16)
    assert first.kind is SpanKind.CONSUMER
    assert first.context.trace_id == second.context.trace_id == trace_id
    assert first.parent is not None
    assert first.parent.span_id == int("00f067aa0ba902b7", 16)
    assert second.parent is not None
    assert second.parent.span_id == first.context.span_id
    # what a handler emits carries its span as the parent of the next hop
    assert answered.traceparent == f"00-{trace_id:032x}-{first.context.span_id:016x}-01"
    assert noted.traceparent == f"00-{trace_id:032x}-{second.context.span_id:016x}-01"
    attributes = dict(first.attributes or {})
    assert attributes["messaging.destination.name"] == "it.tracing.asked"
    assert attributes["cloudevents.event_type"] == "it.tracing.asked.v1"
    assert attributes["bus.handler"] == "answer"


async def test_spans_can_be_turned_off(exporter: InMemorySpanExporter) -> None:
    async with TestBus(*chain(), settings=WorkerSettings(tracing=False)) as bus:
        await bus.publish(Asked(key="k"))
        await bus.drain()
    assert exporter.get_finished_spans() == ()


def test_without_a_tracer_provider_bus_starts_no_spans() -> None:
    # the API alone hands out non-recording spans: bus skips them (hot-path cost for nothing)
    assert bus_tracing.available()
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    assert not bus_tracing.enabled()


async def test_a_message_published_inside_a_span_joins_its_trace(
    exporter: InMemorySpanExporter,
) -> None:
    async with TestBus(*chain()) as bus:
        with trace.get_tracer("upstream").start_as_current_span("POST /hires") as span:
            await bus.publish(Asked(key="k"))
        await bus.drain()
        [asked] = bus.envelopes(Asked)
    context = span.get_span_context()
    expected = f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
    assert asked.traceparent == expected
    answer = next(s for s in exporter.get_finished_spans() if s.name == "answer process")
    assert answer.context.trace_id == context.trace_id
