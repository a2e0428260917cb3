"""Printing saga text: statuses in colour on a terminal, plain text anywhere else.

The text itself comes from :mod:`sagas.timeline` and :mod:`sagas.story` (pure); this
module only decides how it reaches the stream. Rich decides whether ``out`` is a terminal
and honours ``NO_COLOR``; a pipe, a file or a test's buffer gets the text unchanged.

Example::

    echo(format_timeline(state, story=story(onboarding, state)), out=sys.stdout)
"""

from __future__ import annotations

from typing import TextIO

from rich.console import Console
from rich.text import Text

__all__ = ["STATUS_STYLES", "echo"]

#: The colour of each saga and step status (and of its upper-case form in headers).
STATUS_STYLES = {
    "completed": "green",
    "compensated": "yellow",
    "compensating": "yellow",
    "running": "cyan",
    "waiting": "cyan",
    "failed": "red",
    "timed_out": "red",
    "needs_attention": "bold red",
    "cancelled": "magenta",
}


def echo(text: str, *, out: TextIO, end: str = "\n") -> None:
    """Write ``text`` and ``end`` to ``out``; on a terminal, every status word coloured."""
    console = Console(file=out, highlight=False, markup=False, emoji=False, soft_wrap=True)
    if not console.is_terminal or console.no_color:
        out.write(text + end)
        return
    styled = Text(text)
    for status, style in STATUS_STYLES.items():
        styled.highlight_words([status, status.upper()], style, case_sensitive=True)
    console.print(styled, end=end)
