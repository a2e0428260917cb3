"""OpenTelemetry spans, when the ``otel`` extra is installed (otherwise: nothing, at no cost).

Trace context travels in every message as the CloudEvents ``traceparent`` extension, with or
without OpenTelemetry: an emitted message keeps the trace of the message that caused it.
With ``pip install 'bus[otel]'`` and a tracer provider configured by the application (the
OpenTelemetry SDK, an exporter), each handled message also gets a CONSUMER span, child of
the ``traceparent`` it carries, and what the handler emits carries *that* span's context,
so a tracing backend shows the whole process (one onboarding, say) as one trace, a span per
hop. ``BUS_OTEL=false`` turns the spans off while keeping the extra installed.

Example::

    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    trace.set_tracer_provider(TracerProvider())      # plus an exporter of your choice
    # bus run ... : every handled message is now a span named "<handler> process"
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bus.envelope import Envelope

__all__ = ["available", "current_traceparent", "enabled", "handler_span"]

try:
    from opentelemetry import trace as _trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError:  # the otel extra is not installed
    _trace = None  # type: ignore[assignment]

_propagator: Any = TraceContextTextMapPropagator() if _trace is not None else None


def available() -> bool:
    """True when the OpenTelemetry API is importable (the ``otel`` extra)."""
    return _trace is not None


def enabled() -> bool:
    """True when spans would go somewhere: the API is there and a tracer provider is set.

    Without a provider the API hands out non-recording spans; starting them per message
    would still cost microseconds on the hot path for nothing, so bus does not.
    """
    if _trace is None:
        return False
    return not isinstance(_trace.get_tracer_provider(), _trace.ProxyTracerProvider)


@contextmanager
def handler_span(
    env: Envelope, *, app: str, handler: str, topic: str, partition: int, offset: int
) -> Iterator[str | None]:
    """A CONSUMER span for one handled message; yields the ``traceparent`` for its outputs.

    The span is a child of ``env.traceparent`` when the message carries one. An exception
    escaping the block is recorded on the span (and re-raised).
    """
    assert _trace is not None, "handler_span needs the otel extra (check enabled())"
    parent = _propagator.extract({"traceparent": env.traceparent}) if env.traceparent else None
    tracer = _trace.get_tracer("bus")
    attributes: dict[str, str | int] = {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.destination.name": topic,
        "messaging.destination.partition.id": str(partition),
        "messaging.kafka.offset": offset,
        "messaging.message.id": env.id,
        "messaging.consumer.group.name": app,
        "cloudevents.event_id": env.id,
        "cloudevents.event_source": env.source,
        "cloudevents.event_type": env.type,
        "bus.handler": handler,
        "bus.correlation_id": env.correlationid or env.id,
    }
    with tracer.start_as_current_span(
        f"{handler} process",
        context=parent,
        kind=_trace.SpanKind.CONSUMER,
        attributes=attributes,
    ):
        carrier: dict[str, str] = {}
        _propagator.inject(carrier)
        yield carrier.get("traceparent", env.traceparent)


def current_traceparent() -> str | None:
    """The ``traceparent`` of the current span (None outside any recording span)."""
    if _trace is None:
        return None
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent")
