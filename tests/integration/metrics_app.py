"""An app with known outcomes for the Prometheus test: every fifth Ping fails both tries.

Its NDJSON input is written by the test; topics are per run (``METRICS_RUN``). Handlers
wait until the file ``METRICS_GATE`` exists: the test creates it once Prometheus has
scraped the idle process, so every count is seen rising from zero, as in a long-lived one.
"""

from __future__ import annotations

import asyncio
import os

from bus import App, Event, RetryPolicy

RUN = os.environ.get("METRICS_RUN", "default")
GATE = os.environ.get("METRICS_GATE")


class Ping(Event, type="it.prom.ping.v1", topic=f"it.prom.pings.{RUN}", key="key"):
    key: str
    n: int


class Pong(Event, type="it.prom.pong.v1", topic=f"it.prom.pongs.{RUN}", key="key"):
    key: str
    n: int


app = App("it-prom", retry=RetryPolicy(max_attempts=2, initial_delay_s=0, jitter_s=0))


@app.handler(name="pong")
async def pong(ping: Ping) -> Pong:
    while GATE and not os.path.exists(GATE):
        await asyncio.sleep(0.05)
    if ping.n % 5 == 0:
        raise ValueError(f"ping {ping.n} is a multiple of 5")
    return Pong(key=ping.key, n=ping.n)
