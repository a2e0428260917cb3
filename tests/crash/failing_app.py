"""An app whose worker stops with an error once it runs: a lifespan task that raises."""

from __future__ import annotations

import asyncio

from bus import App, Event

app = App("failing")


class Tick(Event, type="it.failing.tick.v1", topic="it.failing.ticks", key="key"):
    key: str


@app.handler
async def tick(message: Tick) -> None:
    return None


@app.background
async def breaks(stop: asyncio.Event) -> None:
    raise RuntimeError("the app's lifespan task broke")
