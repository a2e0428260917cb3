"""The handler the fuzz test feeds: one valid type in, one record out per handled control.

Topics come from ``FUZZ_RUN`` (each run its own topics on the shared broker). Every
handled ``Ping`` emits a ``Pong`` naming the partition and offset it came from, so the
test counts handled records by reading the pong topic back.
"""

from __future__ import annotations

import os

from pydantic import Field

from bus import App, Context, Event

RUN = os.environ.get("FUZZ_RUN", "default")
PINGS = f"it.fuzz.pings.{RUN}"
PONGS = f"it.fuzz.pongs.{RUN}"
PING_TYPE = "it.fuzz.ping.v1"


class Ping(Event, type=PING_TYPE, topic=PINGS, key="key"):
    key: str = Field(max_length=64)
    n: int
    note: str = Field(default="", max_length=256)


class Pong(Event, type="it.fuzz.pong.v1", topic=PONGS, key="key"):
    key: str
    n: int
    partition: int
    offset: int


app = App(f"fuzz-{RUN}")


@app.handler
async def answer(ping: Ping, ctx: Context) -> Pong:
    return Pong(key=ping.key, n=ping.n, partition=ctx.record.partition, offset=ctx.record.offset)
