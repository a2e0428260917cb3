"""An app for process-level tests: echoes each Ping as a Pong on per-run topics.

The topics come from ``ECHO_RUN`` so every test run uses its own topics on the shared
broker. ``ECHO_EFFECTS`` names a file each handled ping is appended to (the effect).
"""

from __future__ import annotations

import os

from bus import App, Event

RUN = os.environ.get("ECHO_RUN", "default")
EFFECTS = os.environ.get("ECHO_EFFECTS")


class Ping(Event, type="it.echo.ping.v1", topic=f"it.echo.pings.{RUN}", key="key"):
    key: str
    n: int


class Pong(Event, type="it.echo.pong.v1", topic=f"it.echo.pongs.{RUN}", key="key"):
    key: str
    n: int
    pid: int


app = App(f"echo-{RUN}")


@app.handler
async def echo(ping: Ping) -> Pong:
    if EFFECTS:
        with open(EFFECTS, "a") as fh:
            fh.write(f"{os.getpid()} {ping.key} {ping.n}\n")
    return Pong(key=ping.key, n=ping.n, pid=os.getpid())
