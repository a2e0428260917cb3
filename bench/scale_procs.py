"""The processes of ``bench/scale.py``: started, watched over HTTP, measured from /proc, stopped.

Every process is started here with :class:`Processes` (a direct child, asked to die with
this process, each with its own HTTP port), and stopped by its pid, SIGTERM then SIGKILL,
when the ``with`` block ends however it ends. CPU time comes from ``/proc/<pid>/stat``
(user + system), which counts what a process did whatever else shares the cores: the
figure to compare runs by on a shared machine. A server that forks (PostgreSQL) is
counted with its live children and the children it has reaped (``cutime``/``cstime``).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bus.devbroker import free_port

ROOT = Path(__file__).resolve().parent.parent
BUS = str(Path(sys.executable).with_name("bus"))
_TICKS = os.sysconf("SC_CLK_TCK")
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child: SIGTERM when the benchmark dies, so a killed run leaks no process."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _stat_fields(pid: int) -> list[str]:
    """``/proc/<pid>/stat`` after the command name (which may hold spaces); [] if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    return text[text.rindex(")") + 2 :].split()


def cpu_s(pid: int, *, reaped_children: bool = False) -> float:
    """CPU seconds (user + system) ``pid`` used so far; with ``reaped_children`` also those
    of its children that exited and were waited for. 0.0 once the process is gone."""
    fields = _stat_fields(pid)  # fields[0] is the state: stat's 3rd field
    if not fields:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / _TICKS


def children_of(pid: int) -> list[int]:
    """The live processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields and int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a forking server: itself, its live children and its reaped ones."""
    return cpu_s(pid, reaped_children=True) + sum(cpu_s(c) for c in children_of(pid))


def machine_busy_s() -> float:
    """CPU seconds every core spent busy since boot (``/proc/stat``: all but idle, iowait)."""
    values = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / _TICKS


def get(url: str, timeout_s: float = 2.0) -> tuple[int, str]:
    """Status and body of a GET (0 and "" when nothing answers)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (OSError, ValueError):
        return 0, ""


def metric_sum(text: str, name: str, **labels: str) -> float:
    """The sum of every sample of ``name`` in a Prometheus text page whose labels include
    ``labels`` (exact name: ``x_count`` is not ``x``)."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, label_text = head.partition("{")
        if metric != name:
            continue
        if all(f'{k}="{v}"' in label_text for k, v in labels.items()):
            total += float(value)
    return total


def owned_partitions(readyz_body: str) -> int | None:
    """Partitions a ready ``bus run`` process owns (its /readyz checks), None if not ready."""
    try:
        answer = json.loads(readyz_body)
    except ValueError:
        return None
    if not answer.get("ready"):
        return None
    owned = 0
    for name, finding in answer.get("checks", {}).items():
        if name != "transport" and finding.startswith("running, "):
            owned += int(finding.split()[1])
    return owned


@dataclass
class Child:
    """One started process and its HTTP port."""

    name: str
    process: subprocess.Popen[bytes]
    port: int

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_s(self) -> float:
        return cpu_s(self.pid)


@dataclass
class Processes:
    """The processes of one measurement, stopped by pid when the ``with`` block ends."""

    env: Mapping[str, str]
    log_dir: Path
    children: list[Child] = field(default_factory=list)

    def start(self, name: str, args: Sequence[str], env: Mapping[str, str] | None = None) -> Child:
        """``bus ARGS`` with its own HTTP port (BUS_HTTP_PORT), logging to ``log_dir``."""
        port = free_port()
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 (the child keeps it)
        try:
            process = subprocess.Popen(
                [BUS, *args],
                cwd=ROOT,
                env={**os.environ, **self.env, **(env or {}), "BUS_HTTP_PORT": str(port)},
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        finally:
            log.close()
        child = Child(name, process, port)
        self.children.append(child)
        return child

    def check_alive(self) -> None:
        for child in self.children:
            if child.process.poll() is not None:
                raise RuntimeError(
                    f"{child.name} exited with {child.process.returncode}; see "
                    f"{self.log_dir / (child.name + '.log')}"
                )

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM every child (they drain and commit), SIGKILL what is left at the deadline."""
        for child in self.children:
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for child in self.children:
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()
        self.children.clear()

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def wait_for(
    what: str, ready: Callable[[], bool], timeout_s: float, procs: Processes, every_s: float
) -> None:
    """Call ``ready()`` every ``every_s`` until it is true; raise TimeoutError at the deadline
    (or the error of a process that exited meanwhile)."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        procs.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} within {timeout_s:.0f}s")
        time.sleep(every_s)


@contextlib.contextmanager
def cpu_window(pids: Mapping[str, int], trees: Mapping[str, int]) -> Iterator[dict[str, float]]:
    """CPU seconds each named pid (and each named forking server) used inside the block,
    and ``machine`` (every core's busy time) and ``wall``; filled in when the block ends."""
    before = {k: cpu_s(p) for k, p in pids.items()} | {k: tree_cpu_s(p) for k, p in trees.items()}
    busy, t0 = machine_busy_s(), time.monotonic()
    used: dict[str, float] = {}
    yield used
    used.update({k: cpu_s(p) - before[k] for k, p in pids.items()})
    used.update({k: tree_cpu_s(p) - before[k] for k, p in trees.items()})
    used["machine"] = machine_busy_s() - busy
    used["wall"] = time.monotonic() - t0
