"""sagas.metrics: the saga metrics are defined by sagas on bus's registry, exported exactly as
catalogued, under bus's naming rules."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from bus import Metrics
from bus.metrics import CATALOG as BUS_CATALOG
from bus.metrics import naming_problems
from sagas.coordinator import SagaObserver
from sagas.metrics import CATALOG, SagaMetrics


def exercised() -> Metrics:
    """A Metrics on which every saga hook was called at least once."""
    m = Metrics()
    observer: SagaObserver = SagaMetrics(m)
    observer.saga_started("onboarding")
    observer.saga_finished("onboarding", "completed", 12.0)
    observer.saga_needs_attention("onboarding")
    observer.saga_step_finished("onboarding", "create_account", "succeeded", 0.5)
    observer.saga_timeout_fired("onboarding", "approve")
    observer.saga_late("onboarding")
    observer.sagas_active("onboarding", {"running": 2}, oldest_age_s=30.0)
    observer.outbox_observed("sqlite", backlog=3, oldest_age_s=1.5)
    observer.saga_store_waited("lock_timeout", 5.0)
    observer.saga_early_input("onboarding", "kept")
    return m


def test_every_saga_metric_is_exported_with_exactly_its_labels_and_nothing_else() -> None:
    m = exercised()
    samples: dict[str, set[frozenset[str]]] = {}
    for family in text_string_to_metric_families(m.render().decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, set()).add(frozenset(sample.labels))
    for spec in CATALOG:
        suffixes = ("_bucket", "_sum", "_count") if spec.type == "histogram" else ("",)
        for suffix in suffixes:
            labels = {*spec.labels, "le"} if suffix == "_bucket" else set(spec.labels)
            assert samples.get(spec.name + suffix) == {frozenset(labels)}, spec.name + suffix
    known = {s.name for s in m.catalog()}
    stray = {
        n
        for n in samples
        if n.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count") not in known
        and not n.endswith("_created")
    }
    assert not stray, f"exported but in no catalog: {stray}"


def test_saga_metrics_follow_bus_naming_rules_and_take_no_bus_name() -> None:
    for spec in CATALOG:
        assert naming_problems(spec) == [], spec.name
    assert not {s.name for s in CATALOG} & {s.name for s in BUS_CATALOG}


def test_a_saga_state_no_longer_counted_drops_to_zero() -> None:
    m = Metrics()
    observer = SagaMetrics(m)
    observer.sagas_active("onboarding", {"running": 2, "compensating": 1})
    observer.sagas_active("onboarding", {"running": 1})
    assert m.sample("bus_sagas_active", {"saga": "onboarding", "state": "compensating"}) == 0
    assert m.sample("bus_sagas_active", {"saga": "onboarding", "state": "running"}) == 1


def test_two_observers_on_one_registry_record_into_the_same_metrics() -> None:
    m = Metrics()
    SagaMetrics(m).saga_started("onboarding")
    SagaMetrics(m).saga_started("onboarding")
    assert m.sample("bus_sagas_started_total", {"saga": "onboarding"}) == 2


def test_store_waits_start_at_zero_for_each_outcome_so_the_first_one_is_an_increase() -> None:
    m = Metrics()
    SagaMetrics(m).saga_store_waited("lock_timeout", 5.0)
    assert m.sample("bus_saga_store_waits_total", {"outcome": "written"}) == 0
    assert m.sample("bus_saga_store_waits_total", {"outcome": "lock_timeout"}) == 1
