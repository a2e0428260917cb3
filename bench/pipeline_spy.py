"""Summaries of the py-spy profiles ``bench/pipeline.py --py-spy PREFIX`` records.

py-spy's ``raw`` format is one line per distinct stack: ``frame;frame;...;leaf COUNT``,
each frame ``function (file:line)``. Idle stacks are not sampled, so a sample is 1/rate
seconds of CPU-bound Python; "own" time is the samples where a function is the leaf.
Stacks of helper threads (asyncio's child watcher blocked in waitpid, which py-spy does
not recognise as idle) are left out: only the event loop's thread counts.

Run on a saved profile::

    python bench/pipeline_spy.py PROFILE.txt [--events N] [--rate HZ]
"""

from __future__ import annotations

import argparse
import collections
import re
from dataclasses import dataclass, field
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]*)(?::(?P<line>\d+))?\)$")


@dataclass(slots=True)
class Profile:
    total: int = 0
    #: function (file) -> samples where it is the leaf frame
    own: collections.Counter[str] = field(default_factory=collections.Counter)
    #: function (file) -> samples where it is on the stack
    inclusive: collections.Counter[str] = field(default_factory=collections.Counter)
    #: package -> samples where the leaf frame is in it
    by_package: collections.Counter[str] = field(default_factory=collections.Counter)
    #: bus function -> samples where it is the deepest bus/ frame (own + non-bus callees)
    bus_deepest: collections.Counter[str] = field(default_factory=collections.Counter)


def _function(frame: str) -> tuple[str, str]:
    """``("func (file)", file)`` of a frame, without its line number."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip(), ""
    file = match["file"]
    return f"{match['func']} ({file})", file


def _package(file: str) -> str:
    if not file:
        return "(native/unknown)"
    if file.startswith("<frozen"):
        return "python (importlib)"
    if file.startswith("bus/"):
        return "bus"
    head = file.split("/", 1)[0]
    if head.endswith(".py"):
        stem = head[:-3]
        return stem if stem.startswith("pipeline") else f"stdlib {stem}"
    return head


def load(path: str | Path) -> Profile:
    prof = Profile()
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        if stack.startswith("Thread._bootstrap (threading.py"):
            continue  # helper threads (asyncio's child watcher, executor): blocked, not work
        frames = [_function(f) for f in stack.split(";")]
        prof.total += n
        leaf, leaf_file = frames[-1]
        prof.own[leaf] += n
        prof.by_package[_package(leaf_file)] += n
        for name in {name for name, _ in frames}:
            prof.inclusive[name] += n
        for name, file in reversed(frames):
            if file.startswith("bus/"):
                prof.bus_deepest[name] += n
                break
    return prof


def summarize(path: str | Path, *, events: int, rate: int, top: int = 20) -> str:
    """Tables of where the samples went (us/ev = CPU microseconds per event)."""
    prof = load(path)
    if not prof.total:
        return f"{path}: no samples"

    def us(n: int) -> str:
        return f"{n / rate / events * 1e6:7.2f}" if events else "      -"

    def table(title: str, counter: collections.Counter[str], keep: str | None = None) -> str:
        rows = [(k, n) for k, n in counter.most_common() if keep is None or f"({keep}" in k]
        lines = [f"== {title} ==", "samples      %   us/ev  function"]
        for name, n in rows[:top]:
            lines.append(f"{n:7d} {100 * n / prof.total:6.1f} {us(n)}  {name}")
        return "\n".join(lines)

    parts = [
        f"{path}: {prof.total} samples at {rate} Hz = {prof.total / rate:.2f} s CPU "
        f"over {events:,} events ({us(prof.total).strip()} us/ev)",
        table("own time by package (leaf frame)", prof.by_package),
        table("top functions by own time", prof.own),
        table("top bus/ functions by own time", prof.own, keep="bus/"),
        table("bus/ functions as the deepest bus frame (own + library calls)", prof.bus_deepest),
        table("bus/ functions inclusive", prof.inclusive, keep="bus/"),
    ]
    return "\n\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description="summarize a bench/pipeline.py py-spy profile")
    parser.add_argument("path")
    parser.add_argument("--events", type=int, default=0, help="events in the profiled run")
    parser.add_argument("--rate", type=int, default=250, help="py-spy sampling rate (Hz)")
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    print(summarize(args.path, events=args.events, rate=args.rate, top=args.top))


if __name__ == "__main__":
    main()
