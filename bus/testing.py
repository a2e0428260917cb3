"""The test kit: run apps on an in-process broker and assert on what they emitted.

Example::

    async def test_account_is_created_for_a_hire() -> None:
        async with TestBus(identity.app) as bus:
            await bus.publish(EmployeeHired(employee_id="e-1", name="Ada"))
            await bus.drain()
            assert [m.employee_id for m in bus.messages(AccountCreated)] == ["e-1"]

With ``clock=VirtualClock()`` time moves only when the test says so: backoffs between
tries and retry tiers wait for :meth:`TestBus.advance`, and :meth:`TestBus.drain` returns
once everything left is waiting for time::

    async with TestBus(app, clock=VirtualClock()) as bus:
        await bus.publish(order)
        await bus.drain()                          # first try failed: waits in its 10 min tier
        await bus.advance(timedelta(minutes=10))   # the retry runs now
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from typing import Any, TypeVar

from bus.app import App
from bus.clock import VirtualClock
from bus.codec import decode
from bus.envelope import Envelope
from bus.errors import ConfigError
from bus.message import Message
from bus.publisher import Publisher
from bus.record import Record, RecordMetadata
from bus.runner import Runner
from bus.transports.memory import MemoryBroker, MemoryTransport
from bus.worker import WorkerSettings

__all__ = ["TestBus"]

M = TypeVar("M", bound=Message)


class TestBus:
    """Apps running on a fresh :class:`MemoryBroker` for the length of an ``async with``."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        *apps: App,
        partitions: int = 3,
        settings: WorkerSettings | None = None,
        source: str = "bus://test",
        clock: VirtualClock | None = None,
    ) -> None:
        self.broker = MemoryBroker(default_partitions=partitions)
        self.transport = MemoryTransport(self.broker)
        fast = replace(settings or WorkerSettings(), commit_interval_s=0.01, fetch_timeout_s=0.01)
        #: The virtual clock the apps run on (None: the wall clock).
        self.clock = clock
        if clock is None:
            self.runner = Runner(list(apps), self.transport, fast)
            self.publisher = Publisher(self.transport, source=source)
        else:
            self.runner = Runner(list(apps), self.transport, fast, clock=clock, sleep=clock.sleep)
            self.publisher = Publisher(self.transport, source=source, clock=clock)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> TestBus:
        self._task = asyncio.create_task(self.runner.run(self._stop))
        await self.runner.started.wait()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    async def publish(self, message: Message, **kwargs: Any) -> RecordMetadata:
        """Publish ``message`` as an upstream system would."""
        return await self.publisher.publish(message, **kwargs)

    async def drain(self, timeout_s: float = 10.0) -> None:
        """Wait until every app has handled and committed everything published so far
        (on a virtual clock: or waits for time to move, a backoff or a retry tier)."""
        await self.runner.wait_idle(timeout_s=timeout_s, sleeping_is_idle=self.clock is not None)

    async def advance(self, delta: timedelta, *, timeout_s: float = 10.0) -> None:
        """Move the virtual clock by ``delta`` (waking what waited for it), then drain."""
        if self.clock is None:
            raise ConfigError("advance() needs a virtual clock: TestBus(..., clock=VirtualClock())")
        self.clock.advance(delta)
        await self.drain(timeout_s)

    def records(self, topic: str) -> list[Record]:
        """Every record on ``topic``."""
        return self.broker.records(topic)

    def envelopes(self, message_type: type[Message]) -> list[Envelope]:
        """Every CloudEvent of ``message_type`` on its topic, in partition order."""
        out = []
        for record in self.broker.records(message_type.bus_topic):
            env = decode(record.headers, record.value)
            if env.type == message_type.bus_type:
                out.append(env)
        return out

    def messages(self, message_type: type[M]) -> list[M]:
        """Every message of ``message_type`` published so far, typed."""
        return [message_type.model_validate_json(e.data) for e in self.envelopes(message_type)]

    def dead_letters(self, topic: str) -> list[Record]:
        """Records dead-lettered from ``topic`` (in ``<topic>.dlq``)."""
        return self.broker.records(f"{topic}.dlq") if f"{topic}.dlq" in self.broker.topics() else []
