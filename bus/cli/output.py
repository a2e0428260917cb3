"""What the commands print, through Rich: tables, progress bars, the one-line error.

On a terminal: colour, a table with a ruled header, a live progress bar on stderr. Piped
or redirected: plain text a script can split on whitespace (no colour, no box drawing, no
wrapping, no progress bar). Rich is imported on first use, never by ``bus --help``.

Example::

    print_table(["ID", "TOPIC"], [["ev-1", "hr.events"]])
    with progress("replaying", total=500) as advance:
        advance(1)
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["error", "is_terminal", "print_table", "progress", "warning"]

#: Wide enough that a plain table never wraps a row: one row is one line for scripts.
_PLAIN_WIDTH = 100_000


def is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


def _console(stream: TextIO) -> Console:
    from rich.console import Console

    if is_terminal(stream):
        return Console(file=stream, highlight=False)
    return Console(
        file=stream, highlight=False, no_color=True, width=_PLAIN_WIDTH, color_system=None
    )


def print_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], *, stream: TextIO | None = None
) -> None:
    """``rows`` under ``headers``: ruled on a terminal, whitespace-aligned columns otherwise."""
    from rich import box
    from rich.table import Table

    out = sys.stdout if stream is None else stream
    terminal = is_terminal(out)
    table = Table(
        box=box.SIMPLE_HEAD if terminal else None,
        show_edge=terminal,
        pad_edge=terminal,
        header_style="bold" if terminal else "",
        padding=(0, 1) if terminal else (0, 2, 0, 0),
    )
    for i, name in enumerate(headers):
        last = i == len(headers) - 1
        table.add_column(name, overflow="fold" if last else "ellipsis", no_wrap=not last)
    for row in rows:
        table.add_row(*row)
    console = _console(out)
    if terminal:
        console.print(table)
        return
    with console.capture() as captured:
        console.print(table)
    out.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))


def error(message: str, *, stream: TextIO | None = None) -> None:
    """``bus: error: MESSAGE``: one line on stderr, the prefix in red on a terminal."""
    _prefixed("bus: error:", "bold red", message, sys.stderr if stream is None else stream)


def warning(message: str, *, stream: TextIO | None = None) -> None:
    """``bus: warning: MESSAGE`` on stderr."""
    _prefixed("bus: warning:", "bold yellow", message, sys.stderr if stream is None else stream)


def _prefixed(prefix: str, style: str, message: str, stream: TextIO) -> None:
    if not is_terminal(stream):  # no Rich import on the plain path (a script, a test)
        print(f"{prefix} {message}", file=stream, flush=True)
        return
    from rich.text import Text

    line = Text(prefix, style=style)
    line.append(" " + message)
    _console(stream).print(line, soft_wrap=True)


@contextlib.contextmanager
def progress(
    description: str, *, total: int, stream: TextIO | None = None
) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on ``stream`` (stderr) while the block runs; yields ``update(done,
    total)``. Nothing is drawn when ``stream`` is not a terminal or there is one item."""
    out = sys.stderr if stream is None else stream
    if not is_terminal(out) or total <= 1:
        yield lambda done, total: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    bar = Progress(
        "{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=_console(out),
    )
    with bar:
        task = bar.add_task(description, total=total)
        yield lambda done, total: bar.update(task, completed=done, total=total)
