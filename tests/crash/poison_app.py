"""An app for the poison and transient fault test, run by ``bus run`` in a subprocess.

A :class:`Job` of kind ``poison`` always fails, ``transient`` fails on its first two
tries then succeeds, ``ok`` succeeds. ``POISON_FIXED=1`` is the fix deployed: poison
jobs succeed too. Topics come from ``POISON_RUN`` (one set per test run on the shared
broker). Each try appends ``<n> <kind> <topic> <partition> <offset> <unix time>`` to the
file ``POISON_TRIES``, each success ``<n> <unix time> <pid>`` to ``POISON_EFFECTS``.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from typing import Literal

from bus import App, Context, Event, RetryPolicy

RUN = os.environ.get("POISON_RUN", "default")
TRIES = os.environ.get("POISON_TRIES")
EFFECTS = os.environ.get("POISON_EFFECTS")
FIXED = os.environ.get("POISON_FIXED") == "1"
#: 3 immediate tries (the partition waits ~0.2 s), then one after 1 s, 2 s and 3 s.
POLICY = RetryPolicy(max_attempts=3, tiers_s=(1.0, 2.0, 3.0))
Kind = Literal["ok", "poison", "transient"]


class Job(Event, type="crash.poison.job.v1", topic=f"crash.poison.jobs.{RUN}", key="key"):
    key: str
    n: int
    kind: Kind


class WarehouseClosedError(Exception):
    """What a poison job raises until the fix is deployed."""


app = App(f"crash-poison-{RUN}", retry=POLICY)
_tries: Counter[int] = Counter()


def _append(path: str | None, line: str) -> None:
    if path:
        with open(path, "a") as fh:
            fh.write(line + "\n")


@app.handler
async def handle_job(job: Job, ctx: Context) -> None:
    r = ctx.record
    _tries[job.n] += 1
    _append(TRIES, f"{job.n} {job.kind} {r.topic} {r.partition} {r.offset} {time.time()}")
    if job.kind == "poison" and not FIXED:
        raise WarehouseClosedError(f"job {job.n}: warehouse closed")
    if job.kind == "transient" and _tries[job.n] <= 2:
        raise ConnectionError(f"job {job.n}: warehouse busy, try {_tries[job.n]}")
    _append(EFFECTS, f"{job.n} {time.time()} {os.getpid()}")
