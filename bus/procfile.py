"""A Procfile: one long-running process per line, ``name: command``.

The format Heroku, foreman and honcho read, so a stack of processes is written down in one
place instead of being found in the source::

    # comments and blank lines are skipped
    identity: bus run handlers.identity.handler:commands_app --http-port $PORT
    sagas: bus sagas run --http-port $PORT

Each command is split like a shell would split it (quotes kept together, no shell run).
``$PORT`` (or ``${PORT}``) is the process's own port: ``base_port`` plus its line's index
among the processes, so two processes never ask for the same one. A command whose first
word is ``bus`` runs this Python's bus (``python -m bus``), the one the supervisor itself
runs on, whatever ``PATH`` says.

Parsing is pure; :mod:`bus.supervise` starts the processes.

Example::

    for p in parse_procfile(Path("deploy/Procfile").read_text(), source="deploy/Procfile"):
        print(p.name, p.argv(base_port=9400, python="/usr/bin/python3"))
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from bus.errors import ConfigError

__all__ = ["Process", "parse_procfile"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_PORT = re.compile(r"\$(?:PORT\b|\{PORT\})")


@dataclass(frozen=True, slots=True)
class Process:
    """One line of a Procfile."""

    #: The name its output lines are prefixed with (letters, digits, ``_``, ``-``).
    name: str
    #: The command's words, ``$PORT`` not yet replaced.
    words: tuple[str, ...]
    #: Its position among the processes (0-based): its port is ``base_port + index``.
    index: int

    def argv(self, *, base_port: int, python: str) -> list[str]:
        """The command to start: ``$PORT`` replaced, a leading ``bus`` run as
        ``python -m bus``."""
        port = str(base_port + self.index)
        words = [_PORT.sub(port, w) for w in self.words]
        if words[0] == "bus":
            return [python, "-u", "-m", "bus", *words[1:]]
        return words


def parse_procfile(text: str, *, source: str = "Procfile") -> list[Process]:
    """The processes of a Procfile's ``text``; one :class:`bus.ConfigError` lists every bad
    line of ``source`` (no colon, a bad or repeated name, no command, unbalanced quotes).

    >>> [p.name for p in parse_procfile("web: bus run app\\n# x\\nsagas: bus sagas run\\n")]
    ['web', 'sagas']
    """
    processes: list[Process] = []
    problems: list[str] = []
    seen: set[str] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, colon, command = line.partition(":")
        name = name.strip()
        where = f"{source}:{number}"
        if not colon:
            problems.append(f"{where}: expected 'name: command'")
            continue
        if not _NAME.match(name):
            problems.append(f"{where}: bad process name {name!r} (letters, digits, _ and -)")
        elif name in seen:
            problems.append(f"{where}: process {name!r} is named twice")
        seen.add(name)
        try:
            words = tuple(shlex.split(command))
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
            continue
        if not words:
            problems.append(f"{where}: process {name!r} has no command")
            continue
        processes.append(Process(name, words, len(processes)))
    if problems:
        raise ConfigError(f"bad Procfile {source}: " + "; ".join(problems))
    if not processes:
        raise ConfigError(f"Procfile {source} names no process ('name: command' per line)")
    return processes
