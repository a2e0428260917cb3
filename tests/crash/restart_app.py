"""An app for the broker-restart test: records each Tick's ``n`` as its effect.

``RESTART_RUN`` names the run (its own topics on the broker). The effect is a line
``<pid> <n> <event id>`` appended to the file ``RESTART_EFFECTS`` (at-least-once: a
redelivery shows as a duplicate n), or, with ``RESTART_DEDUP`` naming a SQLite file, a row
of its ``effects`` table written in the dedup store's transaction (once per event). The
handler also emits a Tock, so the worker's acknowledged-send path crosses the outage too.
"""

from __future__ import annotations

import os
import sqlite3

from bus import App, Context, Event, SqliteDedupStore

RUN = os.environ.get("RESTART_RUN", "default")
EFFECTS = os.environ.get("RESTART_EFFECTS")
DEDUP = os.environ.get("RESTART_DEDUP")

if DEDUP:
    with sqlite3.connect(DEDUP) as db:
        db.execute("CREATE TABLE IF NOT EXISTS effects (pid INTEGER, n INTEGER, id TEXT)")
    db.close()
store = SqliteDedupStore(DEDUP) if DEDUP else None


class Tick(Event, type="crash.restart.tick.v1", topic=f"crash.ticks.{RUN}", key="key"):
    key: str
    n: int


class Tock(Event, type="crash.restart.tock.v1", topic=f"crash.tocks.{RUN}", key="key"):
    key: str
    n: int


app = App(f"restart-{RUN}", dedup=store)


@app.handler
async def record(tick: Tick, ctx: Context) -> Tock:
    row = (os.getpid(), tick.n, ctx.envelope.id)
    if store is not None:
        # in the dedup transaction: the effect commits with the dedup record or not at all
        await ctx.transaction.run(
            lambda db: db.execute("INSERT INTO effects VALUES (?, ?, ?)", row)
        )
    elif EFFECTS:
        with open(EFFECTS, "a") as fh:
            fh.write(" ".join(map(str, row)) + "\n")
    return Tock(key=tick.key, n=tick.n)
