"""The report every benchmark prints: a table of medians, then one JSON line (shared)."""

from __future__ import annotations

import cProfile
import io
import pstats
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(slots=True)
class Row:
    """One measured figure over the repeats."""

    name: str
    values: list[float]
    unit: str
    median: float | None = None  # override (a figure derived from other medians)

    @property
    def mid(self) -> float:
        return self.median if self.median is not None else statistics.median(self.values)


def fmt(x: float) -> str:
    """A figure with as many digits as it deserves."""
    if x != x:  # NaN
        return "nan"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.3f}"


def print_table(rows: Sequence[Row]) -> None:
    """measurement / median / min / max / unit, aligned."""
    header = ("measurement", "median", "min", "max", "unit")
    cells = [header] + [
        (r.name, fmt(r.mid), fmt(min(r.values)), fmt(max(r.values)), r.unit) for r in rows
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    for k, c in enumerate(cells):
        print(
            "  ".join(
                c[i].ljust(widths[i]) if i in (0, 4) else c[i].rjust(widths[i])
                for i in range(len(header))
            )
        )
        if k == 0:
            print("  ".join("-" * w for w in widths))


def profile_report(profiler: cProfile.Profile, path: str, top: int = 25) -> None:
    """Dump the profile to ``path`` and print the top ``bus/`` functions (stderr)."""
    profiler.dump_stats(path)
    for key, label in (("tottime", "own time"), ("cumulative", "cumulative")):
        buf = io.StringIO()
        stats = pstats.Stats(profiler, stream=buf)
        stats.sort_stats(key).print_stats(r"[/\\]bus[/\\]", top)
        body = buf.getvalue()
        print(f"\n== top {top} bus/ functions by {label} ({path}) ==", file=sys.stderr)
        print(body[body.find("   ncalls") :], file=sys.stderr)
