"""Benchmark: what recording metrics costs per hop on the memory transport (target < 5%).

The three-handler chain of ``memory_chain.py`` runs with ``WorkerSettings(metrics=True)``
and ``metrics=False``, interleaved (on, off, on, off, ...) so drift of the machine's
speed hits both alike. Reported: the median time per hop each way, wall-clock and CPU
(CPU time is steadier on a shared machine), and the cost as a share of the hop with
metrics off. Small (~140 B) events by default: the cheaper the hop, the larger the share.

Run::

    python bench/metrics_cost.py [--events 20000] [--repeats 7] [--items 0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
from collections.abc import Sequence
from typing import Any

from memory_chain import HOPS_PER_EVENT, make_messages, run_bus
from report import Row, print_table

from bus import WorkerSettings

TARGET_COST = 0.05


async def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=7, help="runs each way (7)")
    parser.add_argument("--items", type=int, default=0, help="nested items: 0 = ~140 B events")
    parser.add_argument("--partitions", type=int, default=3)
    args = parser.parse_args(argv)
    n = args.events
    hops = HOPS_PER_EVENT * n
    messages = make_messages(n, args.items)
    base = WorkerSettings(commit_interval_s=0.05, fetch_timeout_s=0.05)
    settings = {
        "on": WorkerSettings(**{**_fields(base), "metrics": True}),
        "off": WorkerSettings(**{**_fields(base), "metrics": False}),
    }
    print(
        f"metrics cost: {n:,} events x {HOPS_PER_EVENT} hops, ~{len(messages[0].to_json())} B "
        f"events, {args.repeats} interleaved runs each way; one core (Python "
        f"{platform.python_version()}, {os.cpu_count()} CPUs visible, load "
        f"{os.getloadavg()[0]:.2f})"
    )
    warm = messages[:500]
    for mode in ("on", "off"):
        await run_bus(warm, partitions=args.partitions, settings=settings[mode], timeout_s=60)
    wall: dict[str, list[float]] = {"on": [], "off": []}
    cpu: dict[str, list[float]] = {"on": [], "off": []}
    for i in range(args.repeats):
        for mode in ("on", "off") if i % 2 == 0 else ("off", "on"):
            run = await run_bus(
                messages, partitions=args.partitions, settings=settings[mode], timeout_s=120
            )
            wall[mode].append(run.elapsed_s * 1e6 / hops)
            cpu[mode].append(run.cpu_s * 1e6 / hops)
    med = {k: statistics.median(v) for k, v in wall.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    cost = med["on"] / med["off"] - 1
    cost_cpu = med_cpu["on"] / med_cpu["off"] - 1
    print()
    print_table(
        [
            Row("metrics on, per hop (wall)", wall["on"], "us"),
            Row("metrics off, per hop (wall)", wall["off"], "us"),
            Row("metrics on, per hop (CPU)", cpu["on"], "us"),
            Row("metrics off, per hop (CPU)", cpu["off"], "us"),
        ]
    )
    print()
    verdict = "MET" if max(cost, cost_cpu) < TARGET_COST else "NOT met"
    print(
        f"cost of metrics: {cost * 100:+.1f}% wall, {cost_cpu * 100:+.1f}% CPU per hop "
        f"(target < {TARGET_COST * 100:.0f}%: {verdict})"
    )
    return {
        "benchmark": "metrics_cost",
        "events": n,
        "repeats": args.repeats,
        "payload_bytes": len(messages[0].to_json()),
        "us_per_hop_on": round(med["on"], 3),
        "us_per_hop_off": round(med["off"], 3),
        "cpu_us_per_hop_on": round(med_cpu["on"], 3),
        "cpu_us_per_hop_off": round(med_cpu["off"], 3),
        "cost_wall": round(cost, 4),
        "cost_cpu": round(cost_cpu, 4),
        "target_cost": TARGET_COST,
    }


def _fields(settings: WorkerSettings) -> dict[str, Any]:
    return {name: getattr(settings, name) for name in settings.__dataclass_fields__}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
