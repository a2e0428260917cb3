"""Dashboards and alert rules query only metrics and labels bus and sagas export
(bus.metrics.CATALOG, sagas.metrics.CATALOG)."""

from __future__ import annotations

import importlib.util
from types import ModuleType

import pytest
import yaml

from bus.metrics import CATALOG
from sagas.metrics import CATALOG as SAGA_CATALOG
from tests.promql import (
    DASHBOARDS,
    PROMETHEUS_METRICS,
    ROOT,
    TARGET_LABELS,
    Query,
    dashboard,
    dashboard_queries,
    panels,
    references,
    rule_queries,
)

QUERIES = [*dashboard_queries(), *rule_queries()]


def exported() -> dict[str, set[str]]:
    """Every series name exported -> its label names (histograms: _bucket/_sum/_count)."""
    out: dict[str, set[str]] = {}
    for spec in (*CATALOG, *SAGA_CATALOG):
        labels = set(spec.labels)
        if spec.type == "histogram":
            out[f"{spec.name}_bucket"] = labels | {"le"}
            out[f"{spec.name}_sum"] = labels
            out[f"{spec.name}_count"] = labels
        else:
            out[spec.name] = labels
    for name in PROMETHEUS_METRICS:
        out[name] = set()
    return out


def problems_of(query: Query, series: dict[str, set[str]]) -> list[str]:
    refs = references(query.expr)
    problems = []
    for metric, matched in refs.selectors.items():
        if metric not in series:
            problems.append(f"metric {metric} is not exported")
            continue
        unknown = matched - series[metric] - TARGET_LABELS
        if unknown:
            problems.append(f"{metric} has no label(s) {sorted(unknown)}")
    known = set().union(*(series.get(m, set()) for m in refs.metrics)) | TARGET_LABELS
    unknown = refs.grouping - known
    if unknown:
        problems.append(f"grouping by label(s) {sorted(unknown)} none of its metrics has")
    carried = refs.grouping if refs.aggregated else known
    missing = query.legend_labels - carried
    if missing:
        problems.append(f"legend shows label(s) {sorted(missing)} the result does not carry")
    return problems


@pytest.mark.parametrize("query", QUERIES, ids=[f"{q.where} {q.expr[:40]}" for q in QUERIES])
def test_every_expression_references_only_exported_metrics_and_labels(query: Query) -> None:
    assert problems_of(query, exported()) == [], query.expr


def test_the_check_catches_a_misspelt_metric_a_missing_label_and_an_aggregated_away_legend() -> (
    None
):
    series = exported()
    assert problems_of(Query("x", "rate(bus_mesages_consumed_total[5m])"), series) == [
        "metric bus_mesages_consumed_total is not exported"
    ]
    assert problems_of(Query("x", 'sum(bus_consumer_lag{handler="h"})'), series) == [
        "bus_consumer_lag has no label(s) ['handler']"
    ]
    assert problems_of(Query("x", "sum by (saga) (bus_consumer_lag)"), series) == [
        "grouping by label(s) ['saga'] none of its metrics has"
    ]
    legend = Query("x", "sum by (app) (bus_consumer_lag)", frozenset({"topic"}))
    assert problems_of(legend, series) == [
        "legend shows label(s) ['topic'] the result does not carry"
    ]


def test_every_dashboard_and_rule_references_some_metric() -> None:
    assert len(DASHBOARDS) == 2
    for query in QUERIES:
        assert references(query.expr).metrics, query.where


def build_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build", ROOT / "deploy/grafana/build.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_dashboards_are_what_the_build_script_writes() -> None:
    rendered = build_script().render()
    assert sorted(rendered) == [p.name for p in DASHBOARDS]
    for path in DASHBOARDS:
        assert path.read_text() == rendered[path.name], (
            f"{path.name} differs: run python deploy/grafana/build.py"
        )


@pytest.mark.parametrize(
    ("path", "variables"),
    [("bus-overview.json", {"datasource", "app", "handler"}), ("bus-sagas.json", {"datasource", "saga"})],
)  # fmt: skip
def test_dashboards_have_template_variables_and_every_panel_a_unit_and_query(
    path: str, variables: set[str]
) -> None:
    doc = dashboard(ROOT / "deploy/grafana/dashboards" / path)
    assert {v["name"] for v in doc["templating"]["list"]} == variables
    ids = [p["id"] for p in panels(doc)]
    assert len(ids) == len(set(ids))
    for panel in panels(doc):
        assert panel["fieldConfig"]["defaults"]["unit"], panel["title"]
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"


def test_provisioning_points_grafana_at_the_dashboards_and_prometheus() -> None:
    base = ROOT / "deploy/grafana/provisioning"
    boards = yaml.safe_load((base / "dashboards/bus.yml").read_text())
    assert boards["providers"][0]["type"] == "file"
    sources = yaml.safe_load((base / "datasources/prometheus.yml").read_text())
    assert sources["datasources"][0]["type"] == "prometheus"


def test_overview_has_the_panels_operators_look_for() -> None:
    doc = dashboard(ROOT / "deploy/grafana/dashboards/bus-overview.json")
    exprs = " ".join(t["expr"] for p in panels(doc) for t in p["targets"])
    for needle in (
        "bus_messages_consumed_total",
        "bus_handler_errors_total",
        "bus_consumer_lag",
        "histogram_quantile(0.5,",
        "histogram_quantile(0.95,",
        "histogram_quantile(0.99,",
        "bus_messages_dead_lettered_total",
    ):
        assert needle in exprs


def test_rule_files_are_yaml_with_a_test_per_alert() -> None:
    rules = yaml.safe_load((ROOT / "deploy/prometheus/rules.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    tests = yaml.safe_load((ROOT / "deploy/prometheus/rules_test.yml").read_text())
    tested = {t["alertname"] for case in tests["tests"] for t in case["alert_rule_test"]}
    assert alerts == tested
