"""Every PromQL expression in deploy/ (dashboards, template variables, alert rules), and the
metric names and label names each one references (a small lexer, not a full parser).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
DASHBOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"

#: Labels Prometheus attaches to every scraped series (not exported by bus).
TARGET_LABELS = {"instance", "job"}
#: Metrics Prometheus itself provides per target.
PROMETHEUS_METRICS = {"up"}

_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "bool", "offset", "inf", "nan", "le",
}  # fmt: skip
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_MATCHERS = re.compile(r"\{([^}]*)\}")
_SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^}]*)\}")
_MATCHER_LABEL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")
_IDENT = re.compile(r"(?<![A-Za-z0-9_$.])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?")
_LEGEND_LABEL = re.compile(r"\{\{\s*\.?\$?(?:labels\.)?([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


@dataclass(frozen=True)
class Query:
    """One expression and where it is: ``file: panel title`` or ``file: alert name``."""

    where: str
    expr: str
    #: Labels the panel's legend shows ({{label}}), which the result must carry.
    legend_labels: frozenset[str] = frozenset()


def dashboard(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def panels(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in doc.get("panels", []):
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def dashboard_queries() -> Iterator[Query]:
    for path in DASHBOARDS:
        doc = dashboard(path)
        for panel in panels(doc):
            for target in panel.get("targets", []):
                legend = target.get("legendFormat", "")
                yield Query(
                    f"{path.name}: {panel['title']}",
                    target["expr"],
                    frozenset(_LEGEND_LABEL.findall(legend)),
                )
        for var in doc.get("templating", {}).get("list", []):
            if var.get("type") == "query":
                query = var["query"]
                text = query["query"] if isinstance(query, dict) else query
                yield Query(f"{path.name}: variable {var['name']}", text)


def rule_queries() -> Iterator[Query]:
    doc = yaml.safe_load(RULES.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            name = rule.get("alert") or rule.get("record")
            text = " ".join(str(v) for v in rule.get("annotations", {}).values())
            yield Query(
                f"{RULES.name}: {name}",
                rule["expr"],
                frozenset(re.findall(r"\$labels\.([A-Za-z_][A-Za-z0-9_]*)", text)),
            )


def executable(expr: str, *, rate_interval: str = "1m") -> str:
    """``expr`` with Grafana's variables replaced so Prometheus can run it as is."""
    expr = expr.replace("$__rate_interval", rate_interval).replace("$__interval", rate_interval)
    expr = re.sub(r"\$\{?__range\}?", "1h", expr)
    return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)(?::[a-z]+)?\}?", ".*", expr)


@dataclass(frozen=True)
class References:
    """What an expression mentions."""

    #: Metric name -> label names its selector matches on (``metric{label="..."}``).
    selectors: dict[str, set[str]]
    #: Labels of ``by``/``without``/``on``/``ignoring``/``group_*`` clauses and label_values.
    grouping: set[str]
    #: Whether the result is aggregated (then it carries only the grouping labels).
    aggregated: bool

    @property
    def metrics(self) -> set[str]:
        return set(self.selectors)

    @property
    def labels(self) -> set[str]:
        return self.grouping.union(*self.selectors.values())


def references(expr: str) -> References:
    """The metrics and labels ``expr`` mentions."""
    m = re.fullmatch(r"\s*label_values\(\s*(?:([^,]+?)\s*,\s*)?([A-Za-z_]\w*)\s*\)\s*", expr)
    if m:
        inner = references(m.group(1)) if m.group(1) else References({}, set(), False)
        return References(inner.selectors, inner.grouping | {m.group(2)}, False)
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals say nothing
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range selectors
    grouping: set[str] = set()
    for group in _GROUPING.findall(expr):
        grouping |= {label.strip() for label in group.split(",") if label.strip()}
    selectors: dict[str, set[str]] = {}
    for name, inner in _SELECTOR.findall(expr):
        selectors.setdefault(name, set()).update(_MATCHER_LABEL.findall(inner))
    bare = _MATCHERS.sub("", _GROUPING.sub("", expr))
    for name, call in _IDENT.findall(bare):
        if call or name.lower() in _KEYWORDS or re.fullmatch(r"\d\w*", name):
            continue
        selectors.setdefault(name, set())
    aggregated = bool(re.search(r"\b(?:sum|max|min|avg|count)\s*(?:by|without)?\s*\(", expr))
    return References(selectors, grouping, aggregated)
