"""The handler app ``bench/scale.py`` runs as ``bus run bench.scale_app:app`` processes.

One handler models an automation that calls a SaaS API: it does a fixed amount of CPU
work (``SCALE_WORK_ROUNDS`` SHA-256 rounds over 1 KiB, standing in for building, signing
and parsing a request and its answer) and then waits ``SCALE_IO_MS`` milliseconds on the
event loop (the call's round trip, during which the process handles other partitions),
and emits a result event. Neither purely CPU-bound (on 2 cores that cannot show more than
2 processes' worth) nor purely I/O-bound (that shows only what partitions buy): with both,
one process is bound by its core and the I/O wait bounds each partition, so the
benchmark can show what processes buy and what partitions buy.

The topics and the group are per measurement (fresh ones each round), so they come from
the environment the benchmark sets (``SCALE_IN_TOPIC``, ``SCALE_OUT_TOPIC``,
``SCALE_GROUP``); the module is imported from the repository root (``bench`` is a
namespace package there), never installed.
"""

from __future__ import annotations

import asyncio
import hashlib
import os

from bus import App, Event, Registry

IN_TOPIC = os.environ.get("SCALE_IN_TOPIC", "bench.scale.in")
OUT_TOPIC = os.environ.get("SCALE_OUT_TOPIC", "bench.scale.out")
GROUP = os.environ.get("SCALE_GROUP", "bench-scale")
WORK_ROUNDS = int(os.environ.get("SCALE_WORK_ROUNDS", "100"))
IO_S = float(os.environ.get("SCALE_IO_MS", "10")) / 1000
_BLOCK = bytes(range(256)) * 4  # 1 KiB


def message_classes(in_topic: str, out_topic: str) -> tuple[type[Event], type[Event], Registry]:
    """The input and output event classes on ``in_topic`` / ``out_topic`` (the benchmark
    builds a pair per round to pre-fill that round's topic)."""
    registry = Registry()

    class WorkRequested(
        Event, type="bench.scale.requested.v1", topic=in_topic, key="item_id", registry=registry
    ):
        """One unit of work (the benchmark pre-fills the input topic with these)."""

        item_id: str
        seq: int
        payload: str

    class WorkDone(
        Event, type="bench.scale.done.v1", topic=out_topic, key="item_id", registry=registry
    ):
        """The handler's answer: the digest its CPU work produced."""

        item_id: str
        seq: int
        digest: str

    return WorkRequested, WorkDone, registry


WorkRequested, WorkDone, registry = message_classes(IN_TOPIC, OUT_TOPIC)


def work(seq: int, rounds: int) -> str:
    """``rounds`` chained SHA-256 digests of 1 KiB: deterministic CPU work."""
    digest = seq.to_bytes(8, "big")
    for _ in range(rounds):
        digest = hashlib.sha256(digest + _BLOCK).digest()
    return digest.hex()


app = App(GROUP, registry=registry)


@app.handler
async def call_saas(event: WorkRequested) -> WorkDone:
    digest = work(event.seq, WORK_ROUNDS)
    await asyncio.sleep(IO_S)  # the API's round trip: the loop serves other partitions
    return WorkDone(item_id=event.item_id, seq=event.seq, digest=digest)
