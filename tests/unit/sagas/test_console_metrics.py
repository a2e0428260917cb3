"""sagas.web.health: the console's metrics are exported exactly as catalogued, under bus's
naming rules, and docs/operating.md lists them."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from bus import Metrics
from bus.metrics import CATALOG as BUS_CATALOG
from bus.metrics import naming_problems
from sagas.metrics import CATALOG as SAGA_CATALOG
from sagas.web.health import CATALOG, ConsoleMetrics

ROOT = Path(__file__).resolve().parents[3]


def test_every_console_metric_is_exported_with_exactly_its_labels() -> None:
    m = Metrics()
    observer = ConsoleMetrics(m)
    observer.request_done("/sagas", "GET", 200, duration_s=0.01)
    observer.store_answered(True)
    samples: dict[str, set[frozenset[str]]] = {}
    for family in text_string_to_metric_families(m.render().decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, set()).add(frozenset(sample.labels))
    for spec in CATALOG:
        suffixes = ("_bucket", "_sum", "_count") if spec.type == "histogram" else ("",)
        for suffix in suffixes:
            labels = {*spec.labels, "le"} if suffix == "_bucket" else set(spec.labels)
            assert samples.get(spec.name + suffix) == {frozenset(labels)}, spec.name + suffix


def test_console_metrics_follow_bus_naming_rules_and_take_no_other_name() -> None:
    for spec in CATALOG:
        assert naming_problems(spec) == [], spec.name
    taken = {s.name for s in (*BUS_CATALOG, *SAGA_CATALOG)}
    assert not {s.name for s in CATALOG} & taken


def test_an_unknown_method_is_one_label_value_not_one_per_method() -> None:
    m = Metrics()
    ConsoleMetrics(m).request_done("unmatched", "BREW", 405, duration_s=0.0)
    labels = {"route": "unmatched", "method": "other", "status": "405"}
    assert m.sample("bus_console_requests_total", labels) == 1


def test_the_operating_docs_table_lists_every_console_metric() -> None:
    doc = (ROOT / "docs" / "operating.md").read_text()
    for spec in CATALOG:
        row = f"| `{spec.name}` | {spec.type} | {', '.join(spec.labels) or '-'} |"
        assert row in doc, f"docs/operating.md (Metrics): no row {row}"
