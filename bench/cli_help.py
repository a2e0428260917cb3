"""Benchmark: how long ``bus --help`` and ``bus dlq --help`` take, against Python's start-up.

Each run is a fresh subprocess (``python -m bus ...``, what the ``bus`` console script
runs), timed from spawn to exit with a monotonic clock; stdout is discarded. The baseline
is ``python -c pass`` measured in the same rounds, interleaved with the commands (baseline,
``--help``, ``dlq --help``, baseline, ...), so machine load hits all of them alike. The
budget is 0.5 s for ``bus --help``; ``ratio`` is each command's median over the
baseline's median, the figure that moves least when the machine is busy.

Prints a table, then, as its last line, one JSON object with every figure.

Run::

    .venv/bin/python bench/cli_help.py [--runs 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "bus --help": [sys.executable, "-m", "bus", "--help"],
    "bus dlq --help": [sys.executable, "-m", "bus", "dlq", "--help"],
}
BASELINE = "python -c pass"
BUDGET_S = 0.5


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="runs per command (20)")
    args = parser.parse_args()
    for command in COMMANDS.values():  # warm the file cache and .pyc files, untimed
        timed(command)
    samples: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.runs):
        for name, command in COMMANDS.items():
            samples[name].append(timed(command))
    base = statistics.median(samples[BASELINE])
    figures = {
        name: {
            "median_s": round(statistics.median(values), 4),
            "p90_s": round(p90(values), 4),
            "ratio": round(statistics.median(values) / base, 2),
        }
        for name, values in samples.items()
    }
    print(f"{'command':<16} {'median s':>9} {'p90 s':>7} {'x python':>9}")
    for name, f in figures.items():
        print(f"{name:<16} {f['median_s']:>9.3f} {f['p90_s']:>7.3f} {f['ratio']:>9.2f}")
    help_median = figures["bus --help"]["median_s"]
    verdict = "within" if help_median < BUDGET_S else "OVER"
    print(f"bus --help: {verdict} the {BUDGET_S} s budget")
    print(
        json.dumps(
            {
                "bench": "cli_help",
                "runs": args.runs,
                "budget_s": BUDGET_S,
                "median_s": help_median,
                "p90_s": figures["bus --help"]["p90_s"],
                "ratio": figures["bus --help"]["ratio"],
                "commands": figures,
            }
        )
    )


if __name__ == "__main__":
    main()
