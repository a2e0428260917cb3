"""An app for the broker-restart test: records each Tick's ``n`` as its effect.

``RESTART_RUN`` names the run (its own topics on the broker); ``RESTART_EFFECTS`` the file
each handled tick appends ``<pid> <n> <event id>`` to. The handler also emits a Tock, so
the worker's acknowledged-send path crosses the outage too.
"""

from __future__ import annotations

import os

from bus import App, Context, Event

RUN = os.environ.get("RESTART_RUN", "default")
EFFECTS = os.environ.get("RESTART_EFFECTS")


class Tick(Event, type="crash.restart.tick.v1", topic=f"crash.ticks.{RUN}", key="key"):
    key: str
    n: int


class Tock(Event, type="crash.restart.tock.v1", topic=f"crash.tocks.{RUN}", key="key"):
    key: str
    n: int


app = App(f"restart-{RUN}")


@app.handler
async def record(tick: Tick, ctx: Context) -> Tock:
    # the effect: one line per handling, so a redelivery shows as a duplicate n
    if EFFECTS:
        with open(EFFECTS, "a") as fh:
            fh.write(f"{os.getpid()} {tick.n} {ctx.envelope.id}\n")
    return Tock(key=tick.key, n=tick.n)
