"""Shared fixtures. Backends join the contract suites through the ``cluster`` fixture."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

import pytest
from hypothesis import settings

from bus import MemoryBroker, MemoryTransport, NamespacedTransport, Transport
from bus.config import KafkaConfig
from bus.devbroker import DevBroker
from bus.transports.kafka import KafkaTransport
from tests.postgres import PostgresServer, session_server

IN_CI = os.environ.get("CI", "").lower() == "true"
# every `bus run` a test starts serves HTTP on a free port, not the shared default 9400
os.environ.setdefault("BUS_HTTP_PORT", "0")

# Property tests check behaviour, not speed: on a loaded 2-core CI machine hypothesis's
# 200 ms per-example deadline fails correct code. Speed is the benchmarks' business.
settings.register_profile("bus", deadline=None)
settings.load_profile("bus")
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


def kafka_test_config(bootstrap: str, **overrides: object) -> KafkaConfig:
    """Settings that make Tansu's group joins quick (see docs/architecture.md, Tansu)."""
    base: dict[str, object] = {
        "bootstrap_servers": bootstrap,
        "session_timeout_ms": 3000,
        "heartbeat_interval_ms": 1000,
        "request_timeout_ms": 15000,
        "fetch_max_wait_ms": 20,
        "connect_timeout_s": 10.0,
    }
    return KafkaConfig.from_env({}, **{**base, **overrides})


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevBroker]:
    """A real Tansu broker for the whole run. It cannot be skipped: a missing broker fails."""
    log_path = tmp_path_factory.mktemp("tansu") / "tansu.log"
    broker = DevBroker(log_path=log_path)
    broker.start()
    yield broker
    broker.stop()


def _kafka_cluster(broker: DevBroker) -> Cluster:
    config = kafka_test_config(broker.bootstrap_servers)
    return Cluster("kafka", lambda: KafkaTransport(config), config.max_request_bytes)


def _namespaced_cluster() -> Cluster:
    """The memory log seen through a topic and group prefix (bus/transports/namespace.py)."""
    broker = MemoryBroker(default_partitions=1, max_record_bytes=1_048_576)
    return Cluster(
        "namespaced",
        lambda: NamespacedTransport(MemoryTransport(broker), prefix="ns-1."),
        broker.max_record_bytes,
    )


@pytest.fixture(params=["memory", "namespaced", pytest.param("kafka", marks=pytest.mark.kafka)])
async def cluster(request: pytest.FixtureRequest) -> AsyncIterator[Cluster]:
    if request.param == "kafka":
        c = _kafka_cluster(request.getfixturevalue("kafka_broker"))
    elif request.param == "namespaced":
        c = _namespaced_cluster()
    else:
        c = _memory_cluster()
    yield c
    for client in c.clients:
        await client.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole run (tests/postgres.py): ours, or BUS_TEST_POSTGRES_DSN.

    With CI=true a server that cannot start fails the tests; elsewhere they are skipped.
    """
    yield from session_server()


@pytest.fixture
def postgres_dsn(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh empty database on the session's server, so no test sees another's rows.

    A plain fixture, so async fixtures can ``request.getfixturevalue`` it too. Inside a
    running loop, ``await postgres_server.create_schema()`` is a cheaper isolation.
    """
    dsn = postgres_server.create_database()
    yield dsn
    if not postgres_server.can_restart:  # an external server outlives the run: tidy up
        postgres_server.drop_database(dsn)
