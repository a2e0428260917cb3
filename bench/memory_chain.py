"""Benchmark: handle-and-emit throughput of the memory transport through a 3-handler chain.

A *hop* is one record decoded, handled, its output encoded and appended. N ``Step0``
events are preloaded on a :class:`bus.MemoryBroker` (untimed); then three apps run on
one :class:`bus.Runner`::

    bench-a: Step0 -> Step1    bench-b: Step1 -> Step2    bench-c: Step2 -> Step3 (terminal)

and the time from starting the runner until ``Runner.wait_idle()`` returns is measured
(nothing subtracted): ``hops_per_s = 3 * N / elapsed``. Two baselines run on the same
message objects:

- ``plain``: the three handler functions awaited directly in a loop (no bus);
- ``codec``: the same plus the per-hop serialization the bus must do at minimum
  (``Model.model_validate_json`` of the input, ``to_json`` of the output),

so ``bus_overhead_us_per_hop = 1e6 / hops_per_s - 1e6 / codec_hops_per_s`` is what the
bus itself (envelopes, headers, ids, partitioning, broker, offsets, scheduling) costs.

Measurements are interleaved (bus, plain, codec, bus, ...) and the median of
``--repeats`` is reported. Everything runs in one process, on one thread, on one asyncio
event loop: one core. The last line of stdout is one JSON object with every figure.

Run::

    python bench/memory_chain.py [--events 20000] [--repeats 3] [--profile bus.prof]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pydantic
from pydantic import BaseModel, ConfigDict
from report import Row, print_table, profile_report

from bus import App, Event, MemoryBroker, MemoryTransport, Publisher, Runner, WorkerSettings

TARGET_HOPS_PER_S = 20_000
HOPS_PER_EVENT = 3
IDLE_POLL_S = 0.01  # Runner.wait_idle's poll interval (its default, passed explicitly)
TOPICS = ("bench.chain.step0", "bench.chain.step1", "bench.chain.step2", "bench.chain.step3")


# -- messages (unique type names; ~1 KB nested JSON each) -----------------------------------
class LineItem(BaseModel):
    """One nested sub-object of a step payload."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sku: str
    label: str
    quantity: int
    price_cents: int
    tags: list[str]


class ChainPayload(Event):
    """The shared shape of the chain's messages (abstract: declares no type name)."""

    entity_id: str
    tenant: str
    sequence: int
    stage: str
    note: str
    items: list[LineItem]


class Step0(ChainPayload, type="bench.chain.step0.v1", topic=TOPICS[0], key="entity_id"):
    """The preloaded event that starts a chain."""


class Step1(ChainPayload, type="bench.chain.step1.v1", topic=TOPICS[1], key="entity_id"):
    """Emitted by bench-a."""


class Step2(ChainPayload, type="bench.chain.step2.v1", topic=TOPICS[2], key="entity_id"):
    """Emitted by bench-b."""


class Step3(ChainPayload, type="bench.chain.step3.v1", topic=TOPICS[3], key="entity_id"):
    """Emitted by bench-c; nobody consumes it."""


# -- handlers (plain module functions, so the baselines call exactly what the bus calls) ----
async def step_a(event: Step0) -> Step1:
    return Step1(
        entity_id=event.entity_id,
        tenant=event.tenant,
        sequence=event.sequence + 1,
        stage="a",
        note=event.note,
        items=event.items,
    )


async def step_b(event: Step1) -> Step2:
    return Step2(
        entity_id=event.entity_id,
        tenant=event.tenant,
        sequence=event.sequence + 1,
        stage="b",
        note=event.note,
        items=event.items,
    )


async def step_c(event: Step2) -> Step3:
    return Step3(
        entity_id=event.entity_id,
        tenant=event.tenant,
        sequence=event.sequence + 1,
        stage="c",
        note=event.note,
        items=event.items,
    )


def build_apps() -> list[App]:
    """Three apps, one consumer group each: bench-a, bench-b, bench-c."""
    apps = []
    for name, handler in (("bench-a", step_a), ("bench-b", step_b), ("bench-c", step_c)):
        app = App(name)
        app.handler(handler)
        apps.append(app)
    return apps


def make_messages(n: int, items_per_event: int = 10) -> list[Step0]:
    """``n`` distinct Step0 events over 1,000 entity keys (so all partitions are used).

    10 nested items make ~1 KB of JSON; 0 makes a ~150 B event, the size of the
    onboarding demo's messages.
    """
    out = []
    for i in range(n):
        items = [
            LineItem(
                sku=f"SKU-{(i * 7 + j) % 10_000:05d}",
                label=f"item {j} of {i}",
                quantity=1 + (i + j) % 9,
                price_cents=100 + (i * 31 + j * 17) % 90_000,
                tags=[f"t{j % 4}"],
            )
            for j in range(items_per_event)
        ]
        out.append(
            Step0(
                entity_id=f"entity-{i % 1000:04d}",
                tenant="tenant-bench",
                sequence=i,
                stage="start",
                note="benchmark event, three handler chain",
                items=items,
            )
        )
    return out


# -- measurements ---------------------------------------------------------------------------
@dataclass(slots=True)
class BusRun:
    elapsed_s: float  # runner start -> wait_idle() returned
    tail_s: float  # last terminal record appended -> wait_idle() returned (1 ms resolution)
    preload_s: float  # publish_many of the N events (untimed in hops_per_s)
    cpu_s: float  # this process's CPU time over elapsed_s (less than it: descheduled)


def _settings(commit_interval_s: float, fetch_timeout_s: float) -> WorkerSettings:
    return WorkerSettings(commit_interval_s=commit_interval_s, fetch_timeout_s=fetch_timeout_s)


async def run_bus(
    messages: Sequence[Step0],
    *,
    partitions: int,
    settings: WorkerSettings,
    timeout_s: float,
    profiler: cProfile.Profile | None = None,
) -> BusRun:
    """One bus run on a fresh broker; raises if the chain did not complete exactly."""
    n = len(messages)
    broker = MemoryBroker(default_partitions=partitions)
    for topic in TOPICS:
        broker.create_topic(topic, partitions)
    t_pre = time.perf_counter()
    async with Publisher(MemoryTransport(broker), source="bus://bench") as publisher:
        await publisher.publish_many(messages)
    preload_s = time.perf_counter() - t_pre

    runner = Runner(build_apps(), MemoryTransport(broker), settings)
    stop = asyncio.Event()
    gc.collect()
    if profiler is not None:
        profiler.enable()
    t0 = time.perf_counter()
    c0 = time.process_time()
    running = asyncio.create_task(runner.run(stop), name="bench-runner")
    idle = asyncio.create_task(runner.wait_idle(timeout_s=timeout_s, poll_s=IDLE_POLL_S))
    done, _ = await asyncio.wait({running, idle}, return_when=asyncio.FIRST_COMPLETED)
    elapsed_s = time.perf_counter() - t0
    cpu_s = time.process_time() - c0
    wall_idle = time.time()
    if profiler is not None:
        profiler.disable()
    stop.set()
    if running in done:  # the runner ended before idle: surface its error
        idle.cancel()
        await running
        raise RuntimeError("the runner stopped before the apps were idle")
    idle.result()  # TimeoutError if the chain never drained
    await running

    terminal = broker.records(Step3.bus_topic)
    problems = [
        f"{w.app.name}: handled={w.stats.handled} dead_lettered={w.stats.dead_lettered}"
        for w in runner.workers
        if w.stats.handled != n or w.stats.dead_lettered
    ]
    if len(terminal) != n or problems:
        raise RuntimeError(f"chain incomplete: {len(terminal)}/{n} terminal records; {problems}")
    last_append_s = max(r.timestamp_ms for r in terminal) / 1000
    return BusRun(elapsed_s, max(0.0, wall_idle - last_append_s), preload_s, cpu_s)


async def run_plain(messages: Sequence[Step0]) -> tuple[float, float]:
    """(wall, CPU) seconds to await the three handlers directly for every message."""
    gc.collect()
    t0, c0 = time.perf_counter(), time.process_time()
    for m in messages:
        await step_c(await step_b(await step_a(m)))
    return time.perf_counter() - t0, time.process_time() - c0


async def run_codec(payloads: Sequence[bytes]) -> tuple[float, float]:
    """(wall, CPU) seconds for the chain with by-hand validate-in / serialize-out per hop."""
    gc.collect()
    t0, c0 = time.perf_counter(), time.process_time()
    for data in payloads:
        out1 = (await step_a(Step0.model_validate_json(data))).to_json()
        out2 = (await step_b(Step1.model_validate_json(out1))).to_json()
        (await step_c(Step2.model_validate_json(out2))).to_json()
    return time.perf_counter() - t0, time.process_time() - c0


# -- reporting ------------------------------------------------------------------------------
async def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="Step0 events (default 20000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each measurement (3)")
    parser.add_argument("--partitions", type=int, default=3, help="partitions per topic (3)")
    parser.add_argument(
        "--items",
        type=int,
        default=10,
        help="nested items per event: 10 = ~1 KB JSON (default), 0 = ~150 B",
    )
    parser.add_argument(
        "--commit-interval", type=float, default=0.05, help="WorkerSettings.commit_interval_s"
    )
    parser.add_argument(
        "--fetch-timeout", type=float, default=0.05, help="WorkerSettings.fetch_timeout_s"
    )
    parser.add_argument(
        "--profile", metavar="PATH", help="also profile one extra bus run (cProfile) to PATH"
    )
    args = parser.parse_args(argv)
    if args.events < 1 or args.repeats < 1 or args.partitions < 1:
        parser.error("--events, --repeats and --partitions must be positive")

    n: int = args.events
    hops = HOPS_PER_EVENT * n
    settings = _settings(args.commit_interval, args.fetch_timeout)
    timeout_s = max(60.0, n / 1000)
    messages = make_messages(n, args.items)
    payloads = [m.to_json() for m in messages]
    payload_bytes = statistics.mean(len(p) for p in payloads)

    print(
        f"bus memory-transport chain benchmark: {n:,} events x {HOPS_PER_EVENT} hops = "
        f"{hops:,} hops, {args.partitions} partitions/topic, ~{payload_bytes:.0f} B payloads, "
        f"{args.repeats} interleaved repeats (median reported)"
    )
    print(
        "one process, one thread, one asyncio event loop: everything runs on ONE core "
        f"({os.cpu_count()} CPU(s) visible; Python {platform.python_version()}, "
        f"pydantic {pydantic.VERSION})"
    )
    load_at_start = os.getloadavg()[0]
    print(
        f"WorkerSettings(commit_interval_s={settings.commit_interval_s}, "
        f"fetch_timeout_s={settings.fetch_timeout_s}); wait_idle poll_s={IDLE_POLL_S}; "
        f"1-min load average at start {load_at_start:.2f}"
    )

    # Warm up (imports, pydantic/orjson code paths, first-call caches): one small run each.
    warm = messages[: min(n, 500)]
    await run_bus(warm, partitions=args.partitions, settings=settings, timeout_s=timeout_s)
    await run_plain(warm)
    await run_codec(payloads[: len(warm)])

    bus_runs: list[BusRun] = []
    plain_s: list[tuple[float, float]] = []
    codec_s: list[tuple[float, float]] = []
    for _ in range(args.repeats):
        bus_runs.append(
            await run_bus(
                messages, partitions=args.partitions, settings=settings, timeout_s=timeout_s
            )
        )
        plain_s.append(await run_plain(messages))
        codec_s.append(await run_codec(payloads))

    bus_rate = [hops / r.elapsed_s for r in bus_runs]
    bus_busy_rate = [hops / max(1e-9, r.elapsed_s - r.tail_s) for r in bus_runs]
    cpu_share = [r.cpu_s / r.elapsed_s for r in bus_runs]
    base_cpu_share = [cpu / wall for wall, cpu in plain_s + codec_s]
    bus_cpu_rate = [hops / max(1e-9, r.cpu_s) for r in bus_runs]
    plain_rate = [hops / wall for wall, _ in plain_s]
    codec_rate = [hops / wall for wall, _ in codec_s]
    overhead_rounds = [1e6 / b - 1e6 / c for b, c in zip(bus_rate, codec_rate, strict=True)]

    hops_per_s = statistics.median(bus_rate)
    plain_calls_per_s = statistics.median(plain_rate)
    codec_hops_per_s = statistics.median(codec_rate)
    overhead_us = 1e6 / hops_per_s - 1e6 / codec_hops_per_s
    tail_bound_s = settings.commit_interval_s + settings.fetch_timeout_s + 2 * IDLE_POLL_S

    rows = [
        Row("bus hops_per_s (start -> wait_idle)", bus_rate, "hops/s"),
        Row("bus elapsed", [r.elapsed_s for r in bus_runs], "s"),
        Row("bus idle-detection tail (measured)", [r.tail_s * 1e3 for r in bus_runs], "ms"),
        Row("bus hops_per_s excluding tail (info)", bus_busy_rate, "hops/s"),
        Row("bus per hop", [1e6 / r for r in bus_rate], "us/hop", median=1e6 / hops_per_s),
        Row("bus hops per CPU-second (info)", bus_cpu_rate, "hops/cpu-s"),
        Row("plain_calls_per_s (handlers only)", plain_rate, "calls/s"),
        Row(
            "plain per call",
            [1e6 / r for r in plain_rate],
            "us/call",
            median=1e6 / plain_calls_per_s,
        ),
        Row("codec_hops_per_s (handlers + JSON)", codec_rate, "hops/s"),
        Row(
            "codec per hop", [1e6 / r for r in codec_rate], "us/hop", median=1e6 / codec_hops_per_s
        ),
        Row("bus_overhead_us_per_hop", overhead_rounds, "us/hop", median=overhead_us),
        Row("bus CPU time / wall time", [x * 100 for x in cpu_share], "%"),
        Row("plain+codec CPU time / wall time", [x * 100 for x in base_cpu_share], "%"),
        Row("preload publish_many (untimed)", [r.preload_s for r in bus_runs], "s"),
    ]
    print()
    print_table(rows)
    print()
    print(
        f"target {TARGET_HOPS_PER_S:,} hops/s: "
        f"{'MET' if hops_per_s >= TARGET_HOPS_PER_S else 'NOT met'} "
        f"({hops_per_s:,.0f} hops/s median). Idle detection can add up to ~"
        f"{tail_bound_s * 1e3:.0f} ms (commit_interval + fetch_timeout + 2 idle polls) = "
        f"{tail_bound_s / statistics.median(r.elapsed_s for r in bus_runs) * 100:.1f}% "
        "of the median run; it is included in hops_per_s."
    )
    print(
        "bus_overhead_us_per_hop median = 1e6/median(hops_per_s) - 1e6/median(codec_hops_per_s);"
        " min/max are per-round values."
    )
    if min(statistics.median(cpu_share), statistics.median(base_cpu_share)) < 0.9:
        print(
            f"WARNING: this process got only {statistics.median(cpu_share) * 100:.0f}% (bus) / "
            f"{statistics.median(base_cpu_share) * 100:.0f}% (baselines) of a core: other "
            "processes competed for the CPU, so wall-clock figures are pessimistic and noisy "
            "(see hops per CPU-second)."
        )

    if args.profile:
        profiler = cProfile.Profile()
        await run_bus(
            messages,
            partitions=args.partitions,
            settings=settings,
            timeout_s=timeout_s * 5,
            profiler=profiler,
        )
        profile_report(profiler, args.profile)

    return {
        "benchmark": "memory_chain",
        "single_core": True,
        "execution": "one process, one thread, one asyncio event loop",
        "events": n,
        "hops": hops,
        "repeats": args.repeats,
        "partitions": args.partitions,
        "payload_bytes_mean": round(payload_bytes, 1),
        "commit_interval_s": settings.commit_interval_s,
        "fetch_timeout_s": settings.fetch_timeout_s,
        "idle_poll_s": IDLE_POLL_S,
        "hops_per_s": round(hops_per_s, 1),
        "hops_per_s_min": round(min(bus_rate), 1),
        "hops_per_s_max": round(max(bus_rate), 1),
        "hops_per_s_excluding_tail": round(statistics.median(bus_busy_rate), 1),
        "hops_per_cpu_s": round(statistics.median(bus_cpu_rate), 1),
        "bus_cpu_share": round(statistics.median(cpu_share), 3),
        "baseline_cpu_share": round(statistics.median(base_cpu_share), 3),
        "loadavg_1m_at_start": round(load_at_start, 2),
        "bus_elapsed_s": round(statistics.median(r.elapsed_s for r in bus_runs), 4),
        "bus_us_per_hop": round(1e6 / hops_per_s, 3),
        "idle_tail_s": round(statistics.median(r.tail_s for r in bus_runs), 4),
        "idle_tail_bound_s": round(tail_bound_s, 4),
        "plain_calls_per_s": round(plain_calls_per_s, 1),
        "plain_us_per_call": round(1e6 / plain_calls_per_s, 3),
        "codec_hops_per_s": round(codec_hops_per_s, 1),
        "codec_calls_per_s": round(codec_hops_per_s, 1),
        "codec_us_per_hop": round(1e6 / codec_hops_per_s, 3),
        "bus_overhead_us_per_hop": round(overhead_us, 3),
        "preload_s": round(statistics.median(r.preload_s for r in bus_runs), 4),
        "runs": {
            "bus_hops_per_s": [round(x, 1) for x in bus_rate],
            "bus_elapsed_s": [round(r.elapsed_s, 4) for r in bus_runs],
            "bus_tail_s": [round(r.tail_s, 4) for r in bus_runs],
            "plain_calls_per_s": [round(x, 1) for x in plain_rate],
            "codec_hops_per_s": [round(x, 1) for x in codec_rate],
            "bus_overhead_us_per_hop": [round(x, 3) for x in overhead_rounds],
        },
        "python": platform.python_version(),
        "pydantic": pydantic.VERSION,
        "target_hops_per_s": TARGET_HOPS_PER_S,
        "meets_target": hops_per_s >= TARGET_HOPS_PER_S,
    }


if __name__ == "__main__":
    result = asyncio.run(main())
    sys.stdout.flush()
    print(json.dumps(result))
