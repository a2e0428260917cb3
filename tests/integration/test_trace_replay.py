"""``bus trace`` after ``bus dlq replay``, on TestBus: the replayed record is a replay,
not a second dead letter, and the tree shows what the replay led to."""

from __future__ import annotations

from bus import (
    App,
    Event,
    RetryPolicy,
    TestBus,
    plan_replay,
    read_dead_letters,
    replay_dead_letters,
)
from bus.trace import build_tree, read_hops, render


class SeatRequested(
    Event, type="it.trace_replay.requested.v1", topic="it.trace_replay.in", key="id"
):
    id: str


class SeatAssigned(
    Event, type="it.trace_replay.assigned.v1", topic="it.trace_replay.out", key="id"
):
    id: str


async def test_trace_after_a_replay_shows_the_dead_letter_the_replay_and_its_outcome() -> None:
    app = App("it-trace-replay", retry=RetryPolicy(max_attempts=1))
    seats = {"left": 0}

    @app.handler
    async def assign(request: SeatRequested) -> SeatAssigned:
        if not seats["left"]:
            raise RuntimeError("no seats")
        return SeatAssigned(id=request.id)

    async with TestBus(app) as bus:
        await bus.publish(SeatRequested(id="r-1"))
        await bus.drain()
        letters = await read_dead_letters(bus.transport, ["it.trace_replay.in.dlq"])
        [dead] = letters
        seats["left"] = 1  # the cause is fixed
        assert await replay_dead_letters(bus.transport, plan_replay(letters, max_replays=3)) == 1
        await bus.drain()
        topics = ["it.trace_replay.in", "it.trace_replay.in.dlq", "it.trace_replay.out"]
        hops = await read_hops(bus.transport, topics, dead.id, idle_fetches=1, fetch_timeout_s=0.05)
    assert len(hops) == 4  # the request, its dead letter, its replay, the assignment
    lines = render(build_tree(hops))
    assert len(lines) == 2, lines
    request, assigned = lines
    assert "DEAD-LETTERED (handler_failed in assign: no seats)" in request
    assert "REPLAYED 1 time(s)" in request
    assert "?" not in request
    assert assigned.startswith("`- it.trace_replay.assigned.v1")
    assert "DEAD-LETTERED" not in assigned
