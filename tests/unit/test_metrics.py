"""bus.metrics: the catalog is what the code exports, the numbers add up, and packages on top
of bus define metrics of their own under the same rules."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from bus import ConfigError, Event, OutgoingRecord, envelope_for, new_id, record_for, utc_now
from bus.metrics import (
    CATALOG,
    DURATION_BUCKETS_S,
    NO_HANDLER,
    Metrics,
    MetricSpec,
    naming_problems,
)
from bus.record import TopicPartition


class Made(Event, type="test.metrics.made.v1", topic="test.metrics.out", key="key"):
    key: str


def made(key: str) -> OutgoingRecord:
    message = Made(key=key)
    env = envelope_for(message, source="bus://shop", id=new_id(), time=utc_now())
    return record_for(message, env)


class _Worker:
    app_name = "shop"

    def in_flight(self) -> int:
        return 4

    def end_offsets(self) -> Mapping[TopicPartition, int | None]:
        return {TopicPartition("orders", 0): 10, TopicPartition("orders", 1): None}


def exercised() -> Metrics:
    """A Metrics on which every hook was called at least once."""
    m = Metrics()
    stats = m.handler_stats("shop", "orders", "take_order")
    stats.handled(0.003, 0.0002, [made("a"), made("b")])
    stats.dead_lettered += 1
    m.handler_stats("shop", "orders", NO_HANDLER).skipped += 1
    m.handler_error("shop", "take_order", ValueError("x"))
    m.handler_retry("shop", "take_order")
    m.worker_failed("shop")
    m.store_fault("shop", "take_order")
    m.dead_lettered("shop", "orders", "handler_failed")
    m.committed("shop", {TopicPartition("orders", 0): 7}, 0.001)
    m.watch(_Worker())
    return m


def exposed(m: Metrics) -> dict[str, set[frozenset[str]]]:
    """Sample name -> the label-name sets it is exported with."""
    out: dict[str, set[frozenset[str]]] = {}
    for family in text_string_to_metric_families(m.render().decode()):
        for sample in family.samples:
            out.setdefault(sample.name, set()).add(frozenset(sample.labels))
    return out


def test_every_catalog_metric_is_exported_with_exactly_its_labels() -> None:
    samples = exposed(exercised())
    for spec in CATALOG:
        if spec.type == "histogram":
            expected = {
                f"{spec.name}_bucket": {frozenset({*spec.labels, "le"})},
                f"{spec.name}_sum": {frozenset(spec.labels)},
                f"{spec.name}_count": {frozenset(spec.labels)},
            }
        else:
            expected = {spec.name: {frozenset(spec.labels)}}
        for name, labelsets in expected.items():
            assert samples.get(name) == labelsets, name
    names = {s.name for s in CATALOG}
    stray = {
        n
        for n in samples
        if n.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count") not in names
        and n.removesuffix("_created") not in names
        and not n.endswith("_created")
    }
    assert not stray, f"exported but not in CATALOG: {stray}"


def test_metric_names_follow_prometheus_conventions() -> None:
    for spec in CATALOG:
        assert naming_problems(spec) == [], spec.name
        assert spec.name.startswith("bus_")
        assert (spec.type == "counter") == spec.name.endswith("_total"), spec.name
        if "_duration" in spec.name or "_age" in spec.name or "loop_lag" in spec.name:
            assert spec.name.endswith("_seconds"), spec.name
        assert spec.help.strip()
        assert not {"id", "message_id", "correlation_id", "key"} & set(spec.labels)


def test_handled_records_count_by_outcome_and_outputs_by_topic_and_type() -> None:
    m = exercised()
    labels = {"app": "shop", "topic": "orders", "handler": "take_order"}
    assert m.sample("bus_messages_consumed_total", {**labels, "outcome": "handled"}) == 1
    assert m.sample("bus_messages_consumed_total", {**labels, "outcome": "dead_lettered"}) == 1
    skipped = {**labels, "handler": NO_HANDLER, "outcome": "skipped"}
    assert m.sample("bus_messages_consumed_total", skipped) == 1
    made = {"app": "shop", "topic": "test.metrics.out", "type": "test.metrics.made.v1"}
    assert m.sample("bus_messages_produced_total", made) == 2
    error = {"app": "shop", "handler": "take_order", "error_type": "ValueError"}
    assert m.sample("bus_handler_errors_total", error) == 1
    assert m.sample("bus_handler_duration_seconds_count", labels) == 1
    assert m.sample("bus_handler_duration_seconds_bucket", {**labels, "le": "0.0025"}) == 0
    assert m.sample("bus_handler_duration_seconds_bucket", {**labels, "le": "0.005"}) == 1


def test_lag_is_end_offset_minus_committed_and_unknown_ends_are_left_out() -> None:
    m = exercised()
    assert m.sample("bus_consumer_lag", {"app": "shop", "topic": "orders", "partition": "0"}) == 3
    assert (
        m.sample("bus_consumer_lag", {"app": "shop", "topic": "orders", "partition": "1"}) is None
    )
    assert m.sample("bus_messages_in_flight", {"app": "shop"}) == 4


def test_handler_stats_are_pre_bound_once_per_app_topic_handler() -> None:
    m = Metrics()
    assert m.handler_stats("a", "t", "h") is m.handler_stats("a", "t", "h")
    assert m.handler_stats("a", "t", "h") is not m.handler_stats("a", "t", "h2")


@given(st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), max_size=50))
def test_histogram_buckets_count_every_observation_at_or_below_each_bound(
    durations: list[float],
) -> None:
    m = Metrics()
    stats = m.handler_stats("a", "t", "h")
    for d in durations:
        stats.handled(d, 0.0)
    labels = {"app": "a", "topic": "t", "handler": "h"}
    for bound in DURATION_BUCKETS_S:
        got = m.sample("bus_handler_duration_seconds_bucket", {**labels, "le": repr(bound)})
        assert got == sum(d <= bound for d in durations)
    assert m.sample("bus_handler_duration_seconds_bucket", {**labels, "le": "+Inf"}) == len(
        durations
    )
    assert m.sample("bus_handler_duration_seconds_count", labels) == len(durations)


def test_the_operating_docs_table_lists_every_metric_with_its_type_and_labels() -> None:
    from pathlib import Path

    from sagas.metrics import CATALOG as SAGA_CATALOG

    doc = (Path(__file__).resolve().parents[2] / "docs" / "operating.md").read_text()
    for spec in (*CATALOG, *SAGA_CATALOG):
        row = f"| `{spec.name}` | {spec.type} | {', '.join(spec.labels) or '-'} |"
        assert row in doc, f"docs/operating.md (Metrics): no row {row}"


ORDERS = MetricSpec("bus_orders_taken_total", "counter", ("shop",), "Orders taken.")
WAIT = MetricSpec("bus_order_wait_seconds", "histogram", ("shop",), "Time an order waited.")


def test_a_package_defines_metrics_on_the_registry_once_and_they_are_exported() -> None:
    m = Metrics()
    taken = m.counter(ORDERS)
    assert m.counter(ORDERS) is taken  # a second component, or a second run in one process
    taken.labels("eu").inc()
    m.histogram(WAIT, buckets=(1.0, 10.0)).labels("eu").observe(3.0)
    m.gauge(MetricSpec("bus_orders_open", "gauge", ("shop",), "Orders open.")).labels("eu").set(2)
    assert m.sample("bus_orders_taken_total", {"shop": "eu"}) == 1
    assert m.sample("bus_order_wait_seconds_bucket", {"shop": "eu", "le": "10.0"}) == 1
    assert m.sample("bus_orders_open", {"shop": "eu"}) == 2
    assert [s.name for s in m.catalog()[len(CATALOG) :]] == [
        "bus_orders_taken_total",
        "bus_order_wait_seconds",
        "bus_orders_open",
    ]


def test_a_metric_against_the_naming_rules_is_refused_with_every_problem() -> None:
    bad = MetricSpec("orders_duration", "counter", ("shop", "id"), " ")
    with pytest.raises(ConfigError) as refused:
        Metrics().counter(bad)
    for problem in ("start with bus_", "end in _total", "_seconds", "help text", "no id labels"):
        assert problem in str(refused.value)


def test_a_metric_is_refused_under_another_type_a_taken_name_or_a_second_definition() -> None:
    m = Metrics()
    with pytest.raises(ConfigError, match="not a gauge"):
        m.gauge(ORDERS)
    with pytest.raises(ConfigError, match="bus itself exports"):
        m.gauge(MetricSpec("bus_consumer_lag", "gauge", ("app",), "Lag."))
    m.histogram(WAIT)
    with pytest.raises(ConfigError, match="already defined"):
        m.histogram(WAIT, buckets=(1.0,))
