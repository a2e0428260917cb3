"""Writes the Grafana dashboards (deploy/grafana/dashboards/*.json) from the panel lists below.

The JSON files are committed (Grafana provisioning reads them); this script is how they
are made, so every panel follows one pattern. ``tests/unit/test_dashboards.py`` checks the
files equal this script's output and reference only metrics bus exports.

    python deploy/grafana/build.py
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards"
DS = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"

Panel = dict[str, Any]


def target(expr: str, legend: str, ref: str = "A") -> dict[str, Any]:
    return {"refId": ref, "expr": expr, "legendFormat": legend, "datasource": DS}


def panel(title: str, description: str, unit: str, *targets: dict[str, Any]) -> Panel:
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DS,
        "fieldConfig": {
            "defaults": {"unit": unit, "min": 0, "custom": {"fillOpacity": 10}},
            "overrides": [],
        },
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "targets": [dict(t, refId=chr(ord("A") + i)) for i, t in enumerate(targets)],
    }


def quantiles(metric: str, selector: str, by: str, legend: str) -> list[dict[str, Any]]:
    return [
        target(
            f"histogram_quantile({q}, sum by ({by}, le) (rate({metric}_bucket{selector}[{RATE}])))",
            f"p{round(q * 100)} {legend}",
        )
        for q in (0.5, 0.95, 0.99)
    ]


def variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "query": {"query": query, "refId": name},
        "definition": query,
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }


DATASOURCE_VAR = {
    "name": "datasource",
    "label": "Data source",
    "type": "datasource",
    "query": "prometheus",
    "current": {},
}


def dashboard(uid: str, title: str, description: str, variables: list[Any], rows: list[list[Panel]]) -> dict[str, Any]:  # fmt: skip
    panels = []
    y = 0
    for row in rows:
        width = 24 // len(row)
        for i, p in enumerate(row):
            panels.append({"id": len(panels) + 1, "gridPos": {"x": i * width, "y": y, "w": width, "h": 8}, **p})  # fmt: skip
        y += 8
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["bus"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": [DATASOURCE_VAR, *variables]},
        "annotations": {"list": []},
        "panels": panels,
    }


def overview() -> dict[str, Any]:
    sel = '{app=~"$app", handler=~"$handler"}'
    app = '{app=~"$app"}'
    consumed = f"rate(bus_messages_consumed_total{sel}[{RATE}])"
    rows = [
        [
            panel(
                "Throughput by app and outcome",
                "Records finished per second: handled, dead_lettered or skipped.",
                "reqps",
                target(f"sum by (app, outcome) ({consumed})", "{{app}} {{outcome}}"),
            ),
            panel(
                "Messages produced by type",
                "Messages handlers emitted per second, by type.",
                "reqps",
                target(
                    f"sum by (app, type) (rate(bus_messages_produced_total{app}[{RATE}]))",
                    "{{app}} -> {{type}}",
                ),
            ),
        ],
        [
            panel(
                "Error ratio by handler",
                "Failed handler tries per finished record (retried tries included).",
                "percentunit",
                target(
                    f"sum by (app, handler) (rate(bus_handler_errors_total{sel}[{RATE}])) "
                    f"/ sum by (app, handler) ({consumed})",
                    "{{app}} {{handler}}",
                ),
            ),
            panel(
                "Dead letters by topic and reason",
                "Records sent to dead-letter topics per second (only series above zero).",
                "reqps",
                target(
                    f"sum by (app, topic, reason) (rate(bus_messages_dead_lettered_total{app}[{RATE}])) > 0",
                    "{{app}} {{topic}} {{reason}}",
                ),
            ),
        ],
        [
            panel(
                "Handler latency p50 / p95 / p99",
                "Time a handler took, every try and retry wait included.",
                "s",
                *quantiles(
                    "bus_handler_duration_seconds", sel, "app, handler", "{{app}} {{handler}}"
                ),
            ),
        ],
        [
            panel(
                "Consumer lag by topic",
                "Records after the group's last commit, summed over partitions.",
                "short",
                target(f"sum by (app, topic) (bus_consumer_lag{app})", "{{app}} {{topic}}"),
            ),
            panel(
                "In flight",
                "Records fetched and not settled yet.",
                "short",
                target(f"sum by (app) (bus_messages_in_flight{app})", "{{app}}"),
            ),
        ],
        [
            panel(
                "Retries by handler",
                "Handler tries retried in process per second.",
                "reqps",
                target(
                    f"sum by (app, handler) (rate(bus_handler_retries_total{sel}[{RATE}]))",
                    "{{app}} {{handler}}",
                ),
            ),
            panel(
                "Commit and publish latency p99",
                "Offset commits; handing a record's outputs to the transport.",
                "s",
                target(
                    f"histogram_quantile(0.99, sum by (app, le) (rate(bus_commit_duration_seconds_bucket{app}[{RATE}])))",
                    "commit {{app}}",
                ),
                target(
                    f"histogram_quantile(0.99, sum by (app, le) (rate(bus_publish_duration_seconds_bucket{app}[{RATE}])))",
                    "publish {{app}}",
                ),
            ),
        ],
    ]
    variables = [
        variable("app", "App", "label_values(bus_messages_consumed_total, app)"),
        variable(
            "handler", "Handler", 'label_values(bus_messages_consumed_total{app=~"$app"}, handler)'
        ),
    ]
    return dashboard(
        "bus-overview",
        "bus / overview",
        "Handlers: throughput, errors, latency, lag and dead letters per app and handler.",
        variables,
        rows,
    )


def sagas() -> dict[str, Any]:
    sel = '{saga=~"$saga"}'
    finished = f"sum by (saga, status) (rate(bus_sagas_finished_total{sel}[{RATE}]))"
    all_finished = f"sum by (saga) (rate(bus_sagas_finished_total{sel}[{RATE}]))"
    rows = [
        [
            panel(
                "Active sagas by state",
                "Unfinished instances per state, as last counted by the coordinator.",
                "short",
                target(f"sum by (saga, state) (bus_sagas_active{sel})", "{{saga}} {{state}}"),
            ),
            panel(
                "Started and finished per second",
                "Instances started, and instances reaching each terminal status.",
                "reqps",
                target(
                    f"sum by (saga) (rate(bus_sagas_started_total{sel}[{RATE}]))",
                    "{{saga}} started",
                ),
                target(finished, "{{saga}} {{status}}"),
            ),
        ],
        [
            panel(
                "Completion and compensation ratio",
                "Share of finished instances that completed, or were compensated.",
                "percentunit",
                target(
                    f'sum by (saga) (rate(bus_sagas_finished_total{{saga=~"$saga", status="completed"}}[{RATE}])) / {all_finished}',
                    "{{saga}} completed",
                ),
                target(
                    f'sum by (saga) (rate(bus_sagas_finished_total{{saga=~"$saga", status="compensated"}}[{RATE}])) / {all_finished}',
                    "{{saga}} compensated",
                ),
            ),
            panel(
                "Stuck: sagas needing attention",
                "Instances a compensation could not finish; someone must resolve them.",
                "short",
                target(
                    'sum by (saga) (bus_sagas_active{saga=~"$saga", state="needs_attention"})',
                    "{{saga}} needs_attention",
                ),
            ),
        ],
        [
            panel(
                "Step duration p50 / p95 / p99",
                "Time from a step's command to its reply, by step.",
                "s",
                *quantiles(
                    "bus_saga_step_duration_seconds", sel, "saga, step", "{{saga}} {{step}}"
                ),
            ),
        ],
        [
            panel(
                "Saga duration p95 by status",
                "Time from start to terminal status.",
                "s",
                target(
                    f"histogram_quantile(0.95, sum by (saga, status, le) (rate(bus_saga_duration_seconds_bucket{sel}[{RATE}])))",
                    "{{saga}} {{status}}",
                ),
            ),
            panel(
                "Stuck: oldest unfinished saga",
                "Age of the oldest instance not finished (grows while one is stuck).",
                "s",
                target(f"max by (saga) (bus_saga_oldest_active_age_seconds{sel})", "{{saga}}"),
            ),
        ],
        [
            panel(
                "Timeouts fired by step",
                "Step deadlines that fired per second.",
                "reqps",
                target(
                    f"sum by (saga, step) (rate(bus_saga_timeouts_total{sel}[{RATE}]))",
                    "{{saga}} {{step}}",
                ),
            ),
            panel(
                "Outbox backlog",
                "Saved commands the relay has not published yet.",
                "short",
                target("sum by (store) (bus_outbox_backlog)", "{{store}}"),
            ),
            panel(
                "Outbox oldest entry age",
                "Age of the oldest unpublished outbox entry.",
                "s",
                target("max by (store) (bus_outbox_oldest_age_seconds)", "{{store}}"),
            ),
        ],
    ]
    variables = [variable("saga", "Saga", "label_values(bus_sagas_started_total, saga)")]
    return dashboard(
        "bus-sagas",
        "bus / sagas",
        "Sagas: active by state, completion and compensation, step durations, stuck instances.",
        variables,
        rows,
    )


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {f"{doc['uid']}.json": json.dumps(doc, indent=2) + "\n" for doc in (overview(), sagas())}


if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text)
        print(f"wrote {OUT / name}")
