"""The report of ``bench/ingress.py``: every round's figures, then the medians and a JSON line.

A round runs each load (single events, batches, then 1,000 events/s) on both servers,
one right after the other; a ratio is taken between those two runs, and the summary is
the median over rounds, so one round disturbed by the shared machine moves it little.
"""

from __future__ import annotations

import os
import statistics
from typing import Any

import orjson

__all__ = ["report", "summary"]


def report(
    results: dict[str, list[dict[str, Any]]], *, rate: float, seconds: float, store: str
) -> None:
    """Print the table of every round, then (with both servers measured) the summary JSON."""
    print(f"machine: {os.cpu_count()} cores shared by Tansu, the server and the load generator")
    shown = "PostgreSQL" if store.startswith("postgres") else store
    print(f"the ingress's dedup store: {shown}")
    print(f"{'':16} {'round':>5} {'mode':7} {'events/s':>10} {'refused':>8} {'wrk p99 ms':>11} {'server cpu%':>12} {'broker cpu%':>12} {'load cpu%':>10}")  # fmt: skip
    for kind, rounds in results.items():
        for n, found in enumerate(rounds, 1):
            for mode in ("single", "batch"):
                r = found[mode]
                print(f"{kind:16} {n:5d} {mode:7} {r['events_per_s']:10.0f} {r['refused']:8d} {r['p99_ms']:11.1f} {r['server_cpu_pct']:12.0f} {r['broker_cpu_pct']:12.0f} {r['load_cpu_pct']:10.0f}")  # fmt: skip
    for kind, rounds in results.items():
        for n, found in enumerate(rounds, 1):
            lat = found["latency"]
            print(f"{kind:16} {n:5d} at {rate:g}/s for {seconds:g}s: p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms, "
                  f"{lat['failures']} not 202, server cpu {lat['server_cpu_pct']:.0f}%, "
                  f"load generator cpu {lat['load_cpu_pct']:.0f}%")  # fmt: skip
    if "baseline" not in results or "ingress" not in results:
        return
    figures = summary(results["baseline"], results["ingress"])
    print(
        f"medians of {len(results['ingress'])} rounds: single x{figures['single_per_baseline']}, "
        f"batch x{figures['batch_per_baseline']}, p99 at {rate:g}/s "
        f"{figures['p99_ms_at_1000']} ms (baseline {figures['baseline_p99_ms_at_1000']} ms)"
    )
    print(orjson.dumps(figures).decode())


def summary(base: list[dict[str, Any]], ours: list[dict[str, Any]]) -> dict[str, Any]:
    """The medians over rounds of the ingress's figures and of its per-round ratios, with
    every round's ratio and p99 listed too."""
    ratios = {
        mode: [
            o[mode]["events_per_s"] / b[mode]["events_per_s"]
            for b, o in zip(base, ours, strict=True)
        ]
        for mode in ("single", "batch")
    }
    p99s = [o["latency"]["p99_ms"] for o in ours]

    def median_of(rounds: list[dict[str, Any]], mode: str, figure: str) -> float:
        return statistics.median(r[mode][figure] for r in rounds)

    return {
        "single_per_s": round(median_of(ours, "single", "events_per_s")),
        "single_per_baseline": round(statistics.median(ratios["single"]), 3),
        "batch_per_s": round(median_of(ours, "batch", "events_per_s")),
        "batch_per_baseline": round(statistics.median(ratios["batch"]), 3),
        "p99_ms_at_1000": round(statistics.median(p99s), 2),
        "baseline_single_per_s": round(median_of(base, "single", "events_per_s")),
        "baseline_batch_per_s": round(median_of(base, "batch", "events_per_s")),
        "baseline_p99_ms_at_1000": round(median_of(base, "latency", "p99_ms"), 2),
        "server_cpu_pct_at_1000": round(median_of(ours, "latency", "server_cpu_pct")),
        "baseline_cpu_pct_at_1000": round(median_of(base, "latency", "server_cpu_pct")),
        "rounds": len(ours),
        "single_per_baseline_rounds": [round(r, 3) for r in ratios["single"]],
        "batch_per_baseline_rounds": [round(r, 3) for r in ratios["batch"]],
        "p99_ms_at_1000_rounds": [round(p, 2) for p in p99s],
    }
