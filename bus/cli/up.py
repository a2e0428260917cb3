"""``bus up``: every line of a Procfile as one process, supervised together.

Example::

    bus up deploy/Procfile --base-port 9400
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    app.command(
        "up",
        help="Run every 'name: command' line of a Procfile as a process: each one's output "
        "behind its name, SIGTERM/SIGINT forwarded to all, and when one ends by itself the "
        "others are stopped and the exit code is 1. $PORT in a line is the base port plus "
        "the line's position.",
        short_help="run a Procfile's processes together until Ctrl-C",
    )(up)


def up(
    procfile: Annotated[Path, typer.Argument(metavar="PROCFILE")] = Path("Procfile"),
    base_port: Annotated[int, typer.Option(help="$PORT of the first line")] = 9400,
    grace_s: Annotated[
        float, typer.Option(help="seconds a process gets to stop before it is killed")
    ] = 20.0,
) -> int:
    from bus.supervise import up as supervise_up

    return supervise_up(procfile, base_port=base_port, grace_s=grace_s)
