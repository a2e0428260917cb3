"""Draws every panel of the Grafana dashboards as one PNG per dashboard, from Prometheus.

Grafana is not needed: each panel's PromQL (template variables set to "all",
``$__rate_interval`` to ``--rate-interval``) runs on a real Prometheus's ``query_range``
API, and matplotlib plots the series with the panel's title, unit and legend format at
the dashboard's grid positions. Needs the ``render`` extra (matplotlib).

    python deploy/render_dashboards.py --prometheus http://127.0.0.1:9090 \\
        --minutes 6 --out docs/img
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates
import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter

HERE = Path(__file__).resolve().parent
DASHBOARDS = sorted((HERE / "grafana" / "dashboards").glob("*.json"))
ROW_UNITS = 8  # Grafana grid units per panel height used by deploy/grafana/build.py


def executable(expr: str, rate_interval: str) -> str:
    """The panel's PromQL with Grafana's variables replaced (all values selected)."""
    expr = expr.replace("$__rate_interval", rate_interval).replace("$__interval", rate_interval)
    return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)(?::[a-z]+)?\}?", ".*", expr)


def query_range(base: str, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:  # fmt: skip
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{base}/api/v1/query_range?{params}", timeout=30) as response:
        doc = json.loads(response.read())
    if doc.get("status") != "success":
        raise RuntimeError(f"Prometheus refused {expr!r}: {doc}")
    result: list[dict[str, Any]] = doc["data"]["result"]
    return result


def legend(fmt: str, labels: dict[str, str]) -> str:
    if not fmt:
        return ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) or "value"
    return re.sub(r"\{\{\s*([A-Za-z_]\w*)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt)


def _seconds(v: float, _: object = None) -> str:
    if v == 0:
        return "0"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if abs(v) >= scale:
            return f"{v / scale:.3g} {unit}"
    return f"{v / 1e-9:.3g} ns"


FORMATTERS = {
    "s": FuncFormatter(_seconds),
    "percentunit": FuncFormatter(lambda v, _: f"{v * 100:.3g}%"),
    "reqps": FuncFormatter(lambda v, _: f"{v:.3g}/s"),
    "short": FuncFormatter(lambda v, _: f"{v:.4g}"),
}


def render(path: Path, base: str, start: float, end: float, rate_interval: str, out: Path) -> Path:
    doc = json.loads(path.read_text())
    panels = doc["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels) // ROW_UNITS
    fig = plt.figure(figsize=(16, 3.2 * rows), dpi=90)
    grid = fig.add_gridspec(rows, 24, hspace=0.5, wspace=2.5, top=0.97, bottom=0.03)
    step = max(1.0, (end - start) / 400)
    for panel in panels:
        pos = panel["gridPos"]
        row = pos["y"] // ROW_UNITS
        ax = fig.add_subplot(grid[row, pos["x"] : pos["x"] + pos["w"]])
        unit = panel["fieldConfig"]["defaults"].get("unit", "short")
        drawn = 0
        for target in panel["targets"]:
            for series in query_range(base, executable(target["expr"], rate_interval), start, end, step):  # fmt: skip
                xs = [datetime.fromtimestamp(float(t), UTC) for t, _ in series["values"]]
                ys = [float(v) for _, v in series["values"]]
                ys = [math.nan if math.isinf(y) else y for y in ys]
                ax.plot(xs, ys, linewidth=1.2, label=legend(target.get("legendFormat", ""), series["metric"]))  # fmt: skip
                drawn += 1
        ax.set_title(panel["title"], fontsize=10, loc="left")
        ax.yaxis.set_major_formatter(FORMATTERS.get(unit, FORMATTERS["short"]))
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=UTC))
        ax.set_xlim(datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC))
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
        if drawn:
            ax.legend(fontsize=7, loc="upper left", ncol=2 if drawn > 4 else 1, framealpha=0.6)
        else:
            ax.text(0.5, 0.5, "No data", ha="center", va="center", transform=ax.transAxes)
    span = f"{datetime.fromtimestamp(start, UTC):%Y-%m-%d %H:%M} - {datetime.fromtimestamp(end, UTC):%H:%M} UTC"  # fmt: skip
    fig.suptitle(f"{doc['title']}   ({span}, rate interval {rate_interval})", fontsize=12, x=0.01, y=1.0, ha="left")  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    target_path = out / f"{path.stem}.png"
    fig.savefig(target_path, bbox_inches="tight")
    plt.close(fig)
    return target_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090", help="base URL")
    parser.add_argument("--minutes", type=float, default=15.0, help="time range up to --end")
    parser.add_argument("--end", type=float, help="end of the range, Unix seconds (default: now)")
    parser.add_argument("--rate-interval", default="1m", help="what $__rate_interval becomes")
    parser.add_argument("--out", type=Path, default=HERE.parent / "docs" / "img")
    parser.add_argument("dashboards", nargs="*", type=Path, default=DASHBOARDS)
    args = parser.parse_args(argv)
    end = args.end or time.time()
    start = end - args.minutes * 60
    for path in args.dashboards:
        written = render(
            path, args.prometheus.rstrip("/"), start, end, args.rate_interval, args.out
        )
        print(f"wrote {written}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
