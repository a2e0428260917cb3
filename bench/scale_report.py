"""The figures of ``bench/scale.py``: table rows and the keys of its JSON line.

Each figure is a median over a configuration's rounds, with the rounds themselves under
``runs_<key>``; ratios (speed-ups) are taken per round, then their median.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from report import Row
from scale_handlers import HandlerRound
from scale_sagas import SagaRound, median, p

R = TypeVar("R")
#: (JSON key prefix, table label, the figure of one round, unit, digits)
Spec = tuple[str, str, Callable[[R], float], str, int]


def _cpu_per_event(part: str) -> Callable[[HandlerRound], float]:
    return lambda r: r.cpu_ms_per_event(part)


HANDLER_FIGURES: list[Spec[HandlerRound]] = [
    ("ev_per_s", "events/s", lambda r: r.ev_per_s, "ev/s", 1),
    ("cold_ev_per_s", "events/s from spawn", lambda r: r.cold_ev_per_s, "ev/s", 1),
    ("ready_s", "spawn -> all own partitions", lambda r: r.ready_s, "s", 2),
    *(
        (f"cpu_ms_per_event_{part}", f"CPU per event, {part}", _cpu_per_event(part), "ms", 4)
        for part in ("handlers", "broker", "bench")
    ),
    ("other_cores", "cores busy with other work", lambda r: r.other_cores, "cores", 2),
    ("idle_cores_per_process", "idle, per process", lambda r: r.idle_per_process, "cores", 3),
    ("idle_cores_broker", "idle, broker", lambda r: r.idle_broker_cores, "cores", 3),
]


def _other_cores(r: SagaRound) -> float:
    measured = sum(v for name, v in r.cpu_s.items() if name != "machine")
    return max(0.0, r.cpu_s["machine"] - measured) / r.window_s


def _cpu_per_saga(part: str) -> Callable[[SagaRound], float]:
    return lambda r: 1000 * r.per_saga(r.cpu_s[part])


SAGA_FIGURES: list[Spec[SagaRound]] = [
    ("sagas_per_s", "sagas/s", lambda r: r.sagas_per_s, "sagas/s", 1),
    ("steps_per_s", "steps/s", lambda r: r.steps_per_s, "steps/s", 1),
    *(
        (f"cpu_ms_per_saga_{part}", f"CPU per saga, {part}", _cpu_per_saga(part), "ms", 3)
        for part in ("coordinators", "postgres", "broker", "handlers", "bench")
    ),
    ("other_cores", "cores busy with other work", _other_cores, "cores", 2),
    (
        "write_xacts_per_saga",
        "PostgreSQL write transactions per saga",
        lambda r: r.per_saga(r.write_xacts),
        "tx",
        3,
    ),
    (
        "write_xacts_per_s",
        "PostgreSQL write transactions/s",
        lambda r: r.write_xacts / r.window_s,
        "tx/s",
        1,
    ),
    ("wal_kib_per_saga", "WAL per saga", lambda r: r.per_saga(r.wal_bytes) / 1024, "KiB", 2),
    (
        "commits_per_saga",
        "all commits per saga (reads, polls)",
        lambda r: r.per_saga(r.xact_commit),
        "tx",
        2,
    ),
    ("connections", "PostgreSQL connections", lambda r: float(r.connections), "conns", 0),
    ("outbox_backlog_max", "largest outbox backlog", lambda r: r.outbox_backlog_max, "rows", 0),
    ("p50_saga_s", "p50 saga duration", lambda r: p(r.durations_s, 0.5), "s", 3),
    ("p99_saga_s", "p99 saga duration", lambda r: p(r.durations_s, 0.99), "s", 3),
]


class Report:
    """The table's rows and the JSON object, filled figure by figure."""

    def __init__(self, out: dict[str, Any]) -> None:
        self.rows: list[Row] = []
        self.out = out

    def figure(self, key: str, name: str, values: list[float], unit: str, digits: int) -> None:
        """A row, its median as ``key`` and the rounds as ``runs_<key>``."""
        self.rows.append(Row(name, values, unit))
        self.out[key] = round(statistics.median(values), digits)
        self.out[f"runs_{key}"] = [round(v, digits) for v in values]

    def figures(self, specs: Sequence[Spec[R]], runs: list[R], tag: str, label: str) -> None:
        for key, name, of, unit, digits in specs:
            self.figure(f"{key}_{tag}", f"{label}: {name}", [of(r) for r in runs], unit, digits)

    def speedup(self, key: str, name: str, runs: list[float], base: list[float]) -> None:
        """Per-round ratios ``runs / base`` (rounds paired in order), then their median."""
        ratios = [a / b for a, b in zip(runs, base, strict=False) if b > 0]
        if ratios:
            self.figure(key, name, ratios, "x", 3)

    def handlers(
        self, runs: dict[tuple[int, int], list[HandlerRound]], partitions: int, io_ms: float
    ) -> None:
        base = [r.ev_per_s for r in runs.get((1, partitions), [])]
        for (k, q), rs in runs.items():
            tag = f"p{k}_part{q}"
            self.figures(HANDLER_FIGURES, rs, tag, f"{k} process(es), {q} partitions")
            # a partition handles one record at a time: at most one wait per partition at
            # once (the CPU work comes on top)
            self.out[f"partition_ceiling_ev_per_s_{tag}"] = round(q * 1000 / io_ms, 1)
            if k != 1 and q == partitions:
                label = f"speed-up, {k} vs 1 process(es)"
                self.speedup(f"speedup_{k}_vs_1", label, [r.ev_per_s for r in rs], base)

    def sagas(self, runs: dict[int, list[SagaRound]]) -> None:
        for k, rs in runs.items():
            tag = f"{k}_coordinators"
            self.figures(SAGA_FIGURES, rs, tag, f"sagas, {k} coordinator(s)")
            tables: dict[str, list[float]] = {}
            for r in rs:
                for name, count in r.rows.items():
                    tables.setdefault(name, []).append(count / (r.sagas + 1))  # + warm-up
            self.out[f"rows_per_saga_{tag}"] = {
                name: round(median(v), 3) for name, v in sorted(tables.items())
            }
        if 1 in runs and 2 in runs:
            one = [r.sagas_per_s for r in runs[1]]
            two = [r.sagas_per_s for r in runs[2]]
            self.speedup("sagas_speedup_2_vs_1", "sagas/s, 2 vs 1 coordinator(s)", two, one)
