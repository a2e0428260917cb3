"""The scrape: bus's counters turned into Prometheus metric families when ``/metrics`` is read.

Everything runs on one event loop, so a scrape never sees half an update; nothing here runs
on the hot path. :class:`bus.metrics.Metrics` registers a :class:`HotPathCollector` that
calls :func:`hot_path_families` with its counts.

Example::

    registry.register(HotPathCollector(lambda: hot_path_families(handlers, ...)))
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Protocol

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from bus.handler_stats import HandlerStats
from bus.metric_catalog import BY_NAME, DURATION_BUCKETS_S, NO_HANDLER
from bus.record import TopicPartition

__all__ = ["HotPathCollector", "WorkerView", "hot_path_families"]

_INF_INDEX = len(DURATION_BUCKETS_S)


class WorkerView(Protocol):
    """What the collector reads from a running worker at scrape time (nothing on the hot path)."""

    @property
    def app_name(self) -> str: ...

    def in_flight(self) -> int:
        """Records fetched and not settled yet."""

    def end_offsets(self) -> Mapping[TopicPartition, int | None]:
        """Owned partitions and their end offsets as last seen (None: not known yet)."""


def hot_path_families(
    handlers: Iterable[HandlerStats],
    *,
    handler_errors: Mapping[tuple[str, str, str], int],
    handler_retries: Mapping[tuple[str, str], int],
    dead_letters: Mapping[tuple[str, str, str], int],
    worker_failures: Mapping[str, int],
    store_faults: Mapping[tuple[str, str], int],
    watched: Iterable[WorkerView],
    committed: Mapping[tuple[str, TopicPartition], int],
    event_loop_lag_s: float,
) -> Iterator[Metric]:
    """Every hot-path and scrape-time family, in exposition order (what the collector yields)."""
    consumed, produced, duration, publish_family = _handler_families(handlers)
    errors = _counter("bus_handler_errors_total")
    for labels, n in handler_errors.items():
        errors.add_metric(list(labels), n)
    retries = _counter("bus_handler_retries_total")
    for (app, handler), n in handler_retries.items():
        retries.add_metric([app, handler], n)
    dead = _counter("bus_messages_dead_lettered_total")
    for labels, n in dead_letters.items():
        dead.add_metric(list(labels), n)
    failures = _counter("bus_worker_failures_total")
    for app, n in worker_failures.items():
        failures.add_metric([app], n)
    faults = _counter("bus_store_faults_total")
    for (app, handler), n in store_faults.items():
        faults.add_metric([app, handler], n)
    in_flight = _gauge("bus_messages_in_flight")
    lag = _gauge("bus_consumer_lag")
    for worker in watched:
        app = worker.app_name
        in_flight.add_metric([app], worker.in_flight())
        for tp, end in sorted(worker.end_offsets().items()):
            if end is not None:
                done = committed.get((app, tp), 0)
                lag.add_metric([app, tp.topic, str(tp.partition)], max(0, end - done))
    loop = _gauge("bus_event_loop_lag_seconds")
    loop.add_metric([], event_loop_lag_s)
    yield from (consumed, produced, duration, publish_family, errors, retries, dead)
    yield from (failures, faults, in_flight, lag, loop)


def _handler_families(
    handlers: Iterable[HandlerStats],
) -> tuple[CounterMetricFamily, CounterMetricFamily, HistogramMetricFamily, HistogramMetricFamily]:
    """Consumed, produced, handler duration and publish duration (summed per app)."""
    consumed = _counter("bus_messages_consumed_total")
    produced = _counter("bus_messages_produced_total")
    duration = _histogram("bus_handler_duration_seconds")
    publish: dict[str, tuple[list[int], float]] = {}
    for s in handlers:
        for outcome, n in (
            ("handled", s.handled_count),
            ("dead_lettered", s.dead_lettered),
            ("skipped", s.skipped),
            ("delayed", s.delayed),
            ("duplicate", s.duplicates),
        ):
            if n or outcome == "handled":
                consumed.add_metric([s.app, s.topic, s.handler, outcome], n)
        for header, n in s.produced.items():
            topic = s.produced_topics[header]
            produced.add_metric([s.app, topic, header[1].decode(errors="replace")], n)
        if s.handler != NO_HANDLER:
            duration.add_metric(
                [s.app, s.topic, s.handler], _buckets(s.duration_buckets), s.duration_sum_s
            )
        buckets, total = publish.get(s.app, ([0] * (_INF_INDEX + 1), 0.0))
        publish[s.app] = (
            [a + b for a, b in zip(buckets, s.publish_buckets, strict=True)],
            total + s.publish_sum_s,
        )
    publish_family = _histogram("bus_publish_duration_seconds")
    for app, (buckets, total) in publish.items():
        publish_family.add_metric([app], _buckets(buckets), total)
    return consumed, produced, duration, publish_family


class HotPathCollector(Collector):
    """A collector that yields whatever ``collect`` returns at each scrape."""

    def __init__(self, collect: Callable[[], Iterator[Metric]]) -> None:
        self._collect = collect

    def collect(self) -> Iterable[Metric]:
        return self._collect()


def _counter(name: str) -> CounterMetricFamily:
    spec = BY_NAME[name]
    return CounterMetricFamily(name.removesuffix("_total"), spec.help, labels=spec.labels)


def _gauge(name: str) -> GaugeMetricFamily:
    spec = BY_NAME[name]
    return GaugeMetricFamily(name, spec.help, labels=spec.labels)


def _histogram(name: str) -> HistogramMetricFamily:
    spec = BY_NAME[name]
    return HistogramMetricFamily(name, spec.help, labels=spec.labels)


def _buckets(counts: Sequence[int]) -> list[tuple[str, float]]:
    """Per-bucket counts as Prometheus's cumulative ``le`` buckets."""
    out = []
    running = 0
    for bound, n in zip((*DURATION_BUCKETS_S, float("inf")), counts, strict=True):
        running += n
        out.append(("+Inf" if bound == float("inf") else repr(bound), float(running)))
    return out
