"""Shared fixtures. Backends join the contract suites through the ``cluster`` fixture."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from bus import MemoryBroker, MemoryTransport, Transport

IN_CI = os.environ.get("CI", "").lower() == "true"
_names = itertools.count()


def unique(prefix: str) -> str:
    """A topic or group name no other test uses (brokers keep state across tests)."""
    return f"{prefix}-{os.getpid()}-{next(_names)}"


@dataclass
class Cluster:
    """A log several clients can connect to, as several processes would."""

    name: str
    connect: Callable[[], Transport]
    max_record_bytes: int
    clients: list[Transport] = field(default_factory=list)

    async def client(self) -> Transport:
        transport = self.connect()
        await transport.start()
        self.clients.append(transport)
        return transport


def _memory_cluster() -> Cluster:
    broker = MemoryBroker(default_partitions=1, max_record_bytes=1_048_576)
    return Cluster("memory", lambda: MemoryTransport(broker), broker.max_record_bytes)


CLUSTERS: dict[str, Callable[[], Cluster]] = {"memory": _memory_cluster}


@pytest.fixture(params=sorted(CLUSTERS))
async def cluster(request: pytest.FixtureRequest) -> AsyncIterator[Cluster]:
    c = CLUSTERS[request.param]()
    yield c
    for client in c.clients:
        await client.stop()
