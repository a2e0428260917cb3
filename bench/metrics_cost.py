"""Benchmark: what recording metrics costs per hop on the memory transport (target < 5%).

The three-handler chain of ``memory_chain.py`` runs with ``WorkerSettings(metrics=True)``
and ``metrics=False``, interleaved (on, off, on, off, ...) so drift of the machine's
speed hits both alike. Reported: the median time per hop each way, wall-clock and CPU
(CPU time is steadier on a shared machine), and the cost as a share of the hop with
metrics off. Small (~140 B) events by default: the cheaper the hop, the larger the share.

On a shared machine two full runs differ by more than the cost, so the benchmark also
times exactly what metrics add to a hop (three ``perf_counter`` calls, the route's
counter lookup, ``HandlerStats.handled`` with one emitted record) in a tight loop, best
of several, and divides it by the median CPU time of a hop with metrics off.

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
import time
import timeit
from collections.abc import Sequence
from typing import Any

from memory_chain import HOPS_PER_EVENT, Step1, make_messages, run_bus
from report import Row, print_table

from bus import WorkerSettings, envelope_for, new_id, utc_now
from bus.metrics import HandlerStats, Metrics
from bus.publisher import emitted_record

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
    added_us = added_per_hop_us(messages[0])
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
    share = added_us / med_cpu["off"]
    print(
        f"full runs: {cost * 100:+.1f}% wall, {cost_cpu * 100:+.1f}% CPU per hop "
        f"(target < {TARGET_COST * 100:.0f}%: {verdict}; noise: see min/max)"
    )
    print(
        f"added code alone: {added_us * 1000:.0f} ns per hop = {share * 100:.1f}% of a hop's "
        f"{med_cpu['off']:.1f} us CPU (target < {TARGET_COST * 100:.0f}%: "
        f"{'MET' if share < TARGET_COST else 'NOT met'})"
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
        "added_ns_per_hop": round(added_us * 1000, 1),
        "added_share_of_hop_cpu": round(share, 4),
        "target_cost": TARGET_COST,
    }


def added_per_hop_us(sample: object) -> float:
    """Best-of-7 time of what metrics add to one hop, minus the same loop without it."""
    parent = envelope_for(sample, source="bus://bench", id=new_id(), time=utc_now())  # type: ignore[arg-type]
    out = Step1.model_validate(sample.model_dump())  # type: ignore[attr-defined]
    records = [emitted_record(out, parent, source="bus://bench", id=new_id(), time=utc_now())]
    stats_by_route: dict[str, HandlerStats] = {}
    metrics = Metrics()
    perf = time.perf_counter

    def with_metrics() -> None:
        started = perf()
        handled_at = perf()
        stats = stats_by_route.get("step_a") or bind()
        stats.handled(handled_at - started, perf() - handled_at, records)

    def bind() -> HandlerStats:
        stats = stats_by_route["step_a"] = metrics.handler_stats("a", "t", "step_a")
        return stats

    def without() -> None:
        pass

    n = 200_000
    on = min(timeit.repeat(with_metrics, number=n, repeat=7)) / n
    off = min(timeit.repeat(without, number=n, repeat=7)) / n
    return (on - off) * 1e6


def _fields(settings: WorkerSettings) -> dict[str, Any]:
    return {name: getattr(settings, name) for name in settings.__dataclass_fields__}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
