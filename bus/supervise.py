"""Run every process of a Procfile, as one: ``up(Path("deploy/Procfile"))``.

Each line of the Procfile (:mod:`bus.procfile`) starts as a child process, its output
(stdout and stderr) printed line by line behind its name::

    identity      | 2026-12-06 10:41:02 INFO bus.runner: identity-commands joined ...
    sagas         | 2026-12-06 10:41:03 INFO sagas.coordinator: saga onboarding:e-1 started ...

SIGTERM or SIGINT to the supervisor is forwarded to every child as SIGTERM (each shuts
down gracefully: finishes in flight, commits); a child still running ``grace_s`` later
is killed. A child that ends by itself - whatever its code - is a failure: a service
that stopped must not leave the others looking alive, so the supervisor stops them all
and exits 1. It exits 0 only when it was asked to stop and every child then ended with
0. The children get their own session, so a terminal's Ctrl-C reaches them once, as the
forwarded SIGTERM, not twice.

Example::

    code = up(Path("deploy/Procfile"), base_port=9400)   # until SIGTERM

``python -m bus.supervise [FILE] [BASE_PORT]`` does the same from a shell.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from bus.errors import BusError, ConfigError
from bus.procfile import Process, parse_procfile

__all__ = ["supervise", "up"]

_Say = Callable[[str, str], None]

#: Longest output line read whole from a child (a longer one is split).
_LINE_LIMIT = 1 << 20


def up(
    path: Path = Path("Procfile"),
    *,
    base_port: int = 9400,
    grace_s: float = 20.0,
    out: TextIO | None = None,
) -> int:
    """Run the processes of the Procfile at ``path`` until SIGTERM/SIGINT or one ends;
    0 after a clean stop, 1 when a process ended by itself or failed to stop.

    ``$PORT`` in a line is ``base_port`` plus the line's index among the processes.
    An unreadable or bad Procfile raises :class:`bus.ConfigError` before anything starts.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"cannot read the Procfile {path.absolute()}: {why}") from None
    processes = parse_procfile(text, source=str(path))
    return asyncio.run(
        supervise(processes, base_port=base_port, grace_s=grace_s, out=out or sys.stdout)
    )


async def supervise(
    processes: Sequence[Process],
    *,
    base_port: int,
    grace_s: float,
    out: TextIO,
    python: str = sys.executable,
) -> int:
    """:func:`up` on parsed processes, inside a running event loop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    width = max(len(p.name) for p in processes)

    def say(name: str, text: str) -> None:
        out.write(f"{name:<{width}} | {text}\n")
        out.flush()

    children: dict[str, asyncio.subprocess.Process] = {}
    failed = False
    try:
        async with asyncio.TaskGroup() as tg:
            for p in processes:
                if stop.is_set():
                    break
                argv = p.argv(base_port=base_port, python=python)
                try:
                    child = await asyncio.create_subprocess_exec(
                        *argv,
                        stdin=asyncio.subprocess.DEVNULL,
                        stdout=asyncio.subprocess.PIPE,
                        stderr=asyncio.subprocess.STDOUT,
                        start_new_session=True,
                        preexec_fn=_term_when_parent_dies,
                        limit=_LINE_LIMIT,
                    )
                except OSError as exc:
                    say(p.name, f"cannot start {shlex.join(argv)}: {exc.strerror}")
                    failed = True
                    break
                children[p.name] = child
                say(p.name, f"started (pid {child.pid}): {shlex.join(argv)}")
                assert child.stdout is not None
                tg.create_task(_relay(child.stdout, p.name, say))
            if not failed:
                failed = await _until_one_ends(children, stop, say)
            failed = not await _stop_all(children, grace_s, say) or failed
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    return 1 if failed else 0


def _term_when_parent_dies() -> None:
    """In the child, before exec (Linux): SIGTERM when the supervisor dies, so a supervisor
    that is SIGKILLed (or crashes) leaves no orphans; they drain as on a normal stop. Each
    child has its own session (a Ctrl-C reaches only the supervisor, which forwards it), so
    nothing else would reach them."""
    if sys.platform != "linux":
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


async def _until_one_ends(
    children: dict[str, asyncio.subprocess.Process],
    stop: asyncio.Event,
    say: _Say,
) -> bool:
    """Wait for a stop request or a child's end; True when a child ended by itself."""
    ends = {asyncio.create_task(child.wait()): name for name, child in children.items()}
    asked = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([*ends, asked], return_when=asyncio.FIRST_COMPLETED)
    asked.cancel()
    for task in ends:
        task.cancel()
    died = [(ends[t], t.result()) for t in done if t in ends]
    for name, code in died:
        say(name, f"ended by itself with code {code}: stopping the others")
    return bool(died)


async def _stop_all(
    children: dict[str, asyncio.subprocess.Process], grace_s: float, say: _Say
) -> bool:
    """SIGTERM to every child still running, SIGKILL to those left after ``grace_s``;
    True when every child ended with 0 after the SIGTERM (or before: none did)."""
    for child in children.values():
        if child.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGTERM)
    waits = [child.wait() for child in children.values()]
    try:
        async with asyncio.timeout(grace_s):
            await asyncio.gather(*waits)
    except TimeoutError:
        for name, child in children.items():
            if child.returncode is None:
                say(name, f"still running {grace_s:g}s after SIGTERM: killed")
                with contextlib.suppress(ProcessLookupError):
                    child.kill()
        await asyncio.gather(*(child.wait() for child in children.values()))
        return False
    clean = True
    for name, child in children.items():
        say(name, f"exited with code {child.returncode}")
        clean = clean and child.returncode == 0
    return clean


async def _relay(stream: asyncio.StreamReader, name: str, say: _Say) -> None:
    """Every line of ``stream`` said as ``name``'s, until the child closes it."""
    while True:
        try:
            raw = await stream.readline()
        except ValueError:  # longer than the limit: take what is buffered
            raw = await stream.read(_LINE_LIMIT)
        if not raw:
            return
        say(name, raw.decode("utf-8", errors="replace").rstrip("\r\n"))


def main(argv: Sequence[str]) -> int:
    """``python -m bus.supervise [FILE] [BASE_PORT]`` (until ``bus up`` exists)."""
    path = Path(argv[0]) if argv else Path("Procfile")
    port = argv[1] if len(argv) > 1 else "9400"
    if not port.isdigit():
        print(f"bus: error: BASE_PORT {port!r} must be a number", file=sys.stderr)
        return 2
    try:
        return up(path, base_port=int(port))
    except BusError as exc:
        print(f"bus: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
