"""The ingress's broker probe loop ends on the stop event, not only on a cancellation."""

from __future__ import annotations

import asyncio

from bus.ingress.service import _probe


class CountingTransport:
    """Answers every probe, and asks the ingress to stop at the first one."""

    def __init__(self, stop: asyncio.Event) -> None:
        self.stop = stop
        self.probes = 0

    async def probe(self, timeout_s: float = 2.0) -> bool:
        self.probes += 1
        self.stop.set()
        return True


async def test_the_probe_loop_ends_once_the_ingress_stops_without_being_cancelled() -> None:
    stop = asyncio.Event()
    transport = CountingTransport(stop)
    await asyncio.wait_for(_probe(transport, stop), timeout=10)  # type: ignore[arg-type]
    assert transport.probes == 1
