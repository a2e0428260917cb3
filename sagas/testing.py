"""The saga test kit: a saga on the memory transport and memory store, on a virtual clock.

Time only moves when the test says so (:meth:`SagaTestKit.advance`): a 30-second reply
timeout or a 3-day approval deadline passes in microseconds, and every timestamp in the
saga's timeline is exact. Handlers are optional: pass their apps to run them for real, or
play their part with :meth:`SagaTestKit.reply`.

Example::

    async with SagaTestKit(onboarding) as kit:
        await kit.publish(hired)                       # EmployeeHired(employee_id="e-1", ...)
        await kit.drain()
        [create] = kit.commands(CreateAccount)
        await kit.reply(IdentityAccountProvisioned(...), saga_id="onboarding:e-1")
        await kit.advance(timedelta(seconds=30))        # fires timeouts due by then
        assert kit.status("onboarding:e-1") == SagaStatus.RUNNING
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from bus import (
    App,
    Command,
    Envelope,
    Event,
    MemoryBroker,
    MemoryTransport,
    Message,
    Publisher,
    Runner,
    Transport,
    VirtualClock,
    WorkerSettings,
    decode,
)
from sagas.coordinator import Coordinator, SagaObserver, request_action
from sagas.definition import SagaDefinition
from sagas.effects import task_id
from sagas.state import SagaState, SagaStatus
from sagas.stores.base import OutboxEntry, SagaStore
from sagas.stores.memory import MemorySagaStore
from sagas.stores.task_rows import TaskRow
from sagas.tasks import complete_task, list_tasks
from sagas.versions import Catalog

__all__ = ["SagaTestKit", "SentCommand", "VirtualClock"]

C = TypeVar("C", bound=Command)

#: Where the virtual clock starts unless told otherwise (bus.clock.DEFAULT_START).
DEFAULT_START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


class SentCommand:
    """A command the saga published, with its envelope."""

    __slots__ = ("envelope", "message")

    def __init__(self, envelope: Envelope, message: Command) -> None:
        self.envelope = envelope
        self.message = message

    @property
    def saga_id(self) -> str:
        return self.envelope.correlationid or ""

    def __repr__(self) -> str:
        return f"SentCommand({self.envelope.type}, saga={self.saga_id}, id={self.envelope.id})"


class SagaTestKit:
    """Coordinator + memory store + memory transport (+ handler apps) on a virtual clock.

    ``drain()`` runs everything until nothing is left to do: records consumed, commands
    published, handlers idle, timers due at the current virtual time fired.
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        *definitions: SagaDefinition,
        apps: Sequence[App] = (),
        store: SagaStore | None = None,
        start: datetime = DEFAULT_START,
        partitions: int = 3,
        observer: SagaObserver | None = None,
    ) -> None:
        self.clock = VirtualClock(start)
        self.catalog = Catalog(definitions)
        self.store: SagaStore = store if store is not None else MemorySagaStore()
        self.broker = MemoryBroker(default_partitions=partitions)
        self.transport: Transport = MemoryTransport(self.broker)
        self.coordinator = Coordinator(
            self.catalog, self.store, self.transport, clock=self.clock, observer=observer
        )
        # One consume loop: the coordinator's batch handler is an app of the bus's runner,
        # beside the handler apps; its lifespan tasks' work runs in line (drain).
        fast = WorkerSettings(commit_interval_s=0.01, fetch_timeout_s=0.01)
        self._runner = Runner(
            [self.coordinator.build_app(background=False), *apps], self.transport, fast
        )
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.coordinator.relay.on_published = self._published
        self.publisher = Publisher(self.transport, source="bus://test", clock=self.clock)
        self._commands = {t.bus_type: t for d in self.catalog for t in d.command_types()}
        self._sent: list[SentCommand] = []

    async def __aenter__(self) -> SagaTestKit:
        await self.store.open()
        self._task = asyncio.create_task(self._runner.run(self._stop))
        await self._runner.started.wait()  # the transport, the coordinator and the apps
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
        await self.store.close()

    # -- driving ----------------------------------------------------------------------------

    async def publish(self, message: Message, **kwargs: Any) -> None:
        """Publish ``message`` as an upstream system would (e.g. the trigger)."""
        await self.publisher.publish(message, **kwargs)

    async def reply(self, message: Event, *, saga_id: str) -> None:
        """Publish ``message`` as a handler's reply to ``saga_id`` (its correlation id)."""
        await self.publisher.publish(message, correlationid=saga_id)

    async def drain(self, *, max_rounds: int = 1000) -> None:
        """Run until idle at the current virtual time: every app (the coordinator's batch
        handler among them) idle, then requests, due timers and the outbox in line, again
        until they find nothing to do."""
        for _ in range(max_rounds):
            await self._runner.wait_idle(timeout_s=30.0, poll_s=0.002)
            if not await self.coordinator.tick():
                return
        raise AssertionError(f"the sagas were still busy after {max_rounds} rounds")

    async def advance(self, delta: timedelta) -> None:
        """Move the virtual clock by ``delta`` and run what became due (timers), then drain."""
        self.clock.advance(delta)
        await self.drain()

    async def cancel(self, saga_id: str, reason: str = "cancelled by test") -> None:
        """What ``bus sagas cancel`` does; takes effect at the next drain."""
        await request_action(self.store, saga_id, "cancel", reason=reason, now=self.clock())

    async def complete_task(
        self, saga_id: str, step: str, data: dict[str, Any], actor: str = "test"
    ) -> TaskRow:
        """What ``bus tasks complete`` does for the task of ``step`` in ``saga_id``; takes
        effect at the next drain (:class:`bus.ConfigError` as the CLI's, for bad data)."""
        return await complete_task(
            self.store, task_id(saga_id, step), data, actor, now=self.clock()
        )

    async def tasks(self, assignee: str | None = None) -> list[TaskRow]:
        """The tasks still to do (open or overdue), oldest first."""
        return await list_tasks(self.store, assignee)

    async def retry(self, saga_id: str, reason: str = "retried by test") -> None:
        """What ``bus sagas retry`` does; takes effect at the next drain."""
        await request_action(self.store, saga_id, "retry", reason=reason, now=self.clock())

    # -- asserting --------------------------------------------------------------------------

    def commands(self, of_type: type[C] | None = None, *, saga_id: str | None = None) -> list[Any]:
        """Commands published so far, in order (typed), optionally of one type or saga."""
        return [
            s.message
            for s in self.sent(saga_id)
            if of_type is None or isinstance(s.message, of_type)
        ]

    def sent(self, saga_id: str | None = None) -> list[SentCommand]:
        """Published commands with their envelopes (ids, correlation and causation)."""
        return [s for s in self._sent if saga_id is None or s.saga_id == saga_id]

    def command_types(self, saga_id: str | None = None) -> list[str]:
        """The CloudEvents types of the published commands, in order."""
        return [s.envelope.type for s in self.sent(saga_id)]

    async def state(self, saga_id: str) -> SagaState:
        """The saga's stored state (AssertionError if it was never started)."""
        stored = await self.store.load(saga_id)
        if stored is None:
            raise AssertionError(f"no saga {saga_id!r} was started")
        return stored.state

    async def status(self, saga_id: str) -> SagaStatus:
        return (await self.state(saga_id)).status

    async def timeline(self, saga_id: str) -> list[tuple[str, str | None]]:
        """The saga's history as (event, step) pairs, e.g. ``("sent", "create_account")``."""
        return [(h.event, h.step) for h in (await self.state(saga_id)).history]

    def _published(self, entries: Sequence[OutboxEntry]) -> None:
        for e in entries:
            env = decode(e.headers, e.value)
            model = self._commands.get(env.type)
            if model is not None:
                self._sent.append(SentCommand(env, model.model_validate_json(env.data)))
