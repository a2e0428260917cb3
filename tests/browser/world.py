"""A small live system for the console's browser tests, on its own thread and loop.

Two saga definitions (``console_order``, and ``console_gift`` with a human task) with
their handler app on the memory transport, the
coordinator on a SQLite store, and the console serving on a free loopback port. Selenium
is synchronous, so the world runs beside it: :meth:`World.call` runs a coroutine on the
world's loop and waits for it.

The order saga: reserve stock (undone by releasing it), an approval wait for orders that
need one, then charge the card. A declined card compensates; while ``release_broken`` is
set, releasing fails, so the saga needs attention until an operator retries it. The gift
saga: a person chooses the gift (a :class:`~sagas.task_stage.Task` whose form is
:class:`GiftChosen`), then the card is charged.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Coroutine
from datetime import date, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, Field

from bus import (
    App,
    Command,
    Event,
    OutgoingRecord,
    Publisher,
    Runner,
    TopicSpec,
    Transport,
    WorkerSettings,
    hash_token,
)
from bus.transports.memory import MemoryBroker, MemoryTransport
from sagas.coordinator import Coordinator
from sagas.definition import Compensation, SagaDefinition, Step, Task, Wait
from sagas.stores.sqlite import SqliteSagaStore
from sagas.stores.task_rows import TaskRow
from sagas.versions import Catalog
from sagas.web import build_console_app, parse_tokens

T = TypeVar("T")

OPERATOR_TOKEN = "operator-token-0123456789"
VIEWER_TOKEN = "viewer-token-0123456789"
TOKENS = f"""
[[tokens]]
name = "alice"
sha256 = "{hash_token(OPERATOR_TOKEN)}"
role = "operator"

[[tokens]]
name = "bob"
sha256 = "{hash_token(VIEWER_TOKEN)}"
role = "viewer"
"""


class OrderPlaced(Event, type="console.order.placed.v1", topic="console.orders", key="order_id"):
    order_id: str
    needs_approval: bool = False


class OrderApproved(
    Event, type="console.order.approved.v1", topic="console.orders", key="order_id"
):
    order_id: str
    approver: str = ""


class OrderRejected(
    Event, type="console.order.rejected.v1", topic="console.orders", key="order_id"
):
    order_id: str


class ReserveStock(Command, type="console.stock.reserve.v1", topic="console.stock", key="order_id"):
    order_id: str


class StockReserved(
    Event, type="console.stock.reserved.v1", topic="console.replies", key="order_id"
):
    order_id: str


class ReleaseStock(Command, type="console.stock.release.v1", topic="console.stock", key="order_id"):
    order_id: str


class StockReleased(
    Event, type="console.stock.released.v1", topic="console.replies", key="order_id"
):
    order_id: str


class StockReleaseFailed(
    Event, type="console.stock.release-failed.v1", topic="console.replies", key="order_id"
):
    order_id: str


class ChargeCard(Command, type="console.card.charge.v1", topic="console.stock", key="order_id"):
    order_id: str


class CardCharged(Event, type="console.card.charged.v1", topic="console.replies", key="order_id"):
    order_id: str


class CardDeclined(Event, type="console.card.declined.v1", topic="console.replies", key="order_id"):
    order_id: str
    reason: str = "declined"


class Order(BaseModel):
    order_id: str
    needs_approval: bool = False


def needs_approval(data: Order) -> bool:
    return data.needs_approval


ORDER = SagaDefinition(
    name="console_order",
    version=1,
    trigger=OrderPlaced,
    correlation_key="order_id",
    data=Order,
    start=lambda e: Order(order_id=e.order_id, needs_approval=e.needs_approval),
    stages=[
        Step(
            "reserve_stock",
            command=ReserveStock,
            success=StockReserved,
            compensation=Compensation(
                ReleaseStock, success=StockReleased, failure=StockReleaseFailed, max_attempts=1
            ),
        ),
        Wait(
            "approval",
            event=OrderApproved,
            rejected=OrderRejected,
            deadline=timedelta(days=1),
            when=needs_approval,
        ),
        Step("charge_card", command=ChargeCard, success=CardCharged, failure=CardDeclined),
    ],
)


class GiftOrdered(Event, type="console.gift.ordered.v1", topic="console.orders", key="order_id"):
    order_id: str


class Wrapping(StrEnum):
    PLAIN = "plain"
    FESTIVE = "festive"


class GiftChosen(BaseModel):
    """The form the gift task's assignee fills in."""

    gift: str = Field(min_length=1, description="what to send")
    quantity: int = Field(ge=1)
    wrapping: Wrapping = Wrapping.PLAIN
    deliver_on: date | None = None
    card: bool = False


class Gift(BaseModel):
    order_id: str
    gift: str = ""


def remember_gift(data: Gift, form: GiftChosen) -> Gift:
    return data.model_copy(update={"gift": f"{form.quantity} x {form.gift} ({form.wrapping})"})


GIFT = SagaDefinition(
    name="console_gift",
    version=1,
    trigger=GiftOrdered,
    correlation_key="order_id",
    data=Gift,
    start=lambda e: Gift(order_id=e.order_id),
    stages=[
        Task("choose_gift", assignee="santa@example.com", form=GiftChosen,
             deadline=timedelta(days=1), update=remember_gift),
        Step("charge_card", command=ChargeCard, success=CardCharged, failure=CardDeclined),
    ],
)  # fmt: skip


class Shop:
    """The handler side: what it declines and whether releasing stock works."""

    def __init__(self) -> None:
        self.declines: set[str] = set()
        self.release_broken = False

    def app(self) -> App:
        app = App("console-shop")

        @app.handler
        async def reserve(command: ReserveStock) -> StockReserved:
            return StockReserved(order_id=command.order_id)

        @app.handler
        async def release(command: ReleaseStock) -> StockReleased | StockReleaseFailed:
            if self.release_broken:
                return StockReleaseFailed(order_id=command.order_id)
            return StockReleased(order_id=command.order_id)

        @app.handler
        async def charge(command: ChargeCard) -> CardCharged | CardDeclined:
            if command.order_id in self.declines:
                return CardDeclined(order_id=command.order_id, reason="card declined by bank")
            return CardCharged(order_id=command.order_id)

        return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class World:
    """Start with ``with World(tmp) as world:``; ``world.url`` is the console."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.shop = Shop()
        self.transport: Transport = MemoryTransport(MemoryBroker(default_partitions=2))
        self.store = SqliteSagaStore(str(directory / "sagas.db"))
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="console-world", daemon=True)
        self._error: BaseException | None = None

    def __enter__(self) -> World:
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            raise RuntimeError(f"the world did not start: {self._error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def call(self, coro: Coroutine[Any, Any, T], timeout_s: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._run())
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    async def _run(self) -> None:
        self._stop = asyncio.Event()
        settings = WorkerSettings(commit_interval_s=0.05)
        coordinator = Coordinator(
            Catalog([ORDER, GIFT]), self.store, self.transport, poll_interval_s=0.05
        )
        topics = {*coordinator.topics, "console.stock", "console.replies", "console.orders"}
        apps = [self.shop.app()]
        runner = Runner(
            apps,
            self.transport,
            settings,
            ensure_topics=[TopicSpec(t, partitions=2) for t in sorted(topics)],
        )
        stop_apps, stop_coordinator = asyncio.Event(), asyncio.Event()
        async with self.store:
            console = build_console_app(
                self.store, definitions=[ORDER, GIFT], apps=apps, transport=self.transport,
                tokens=parse_tokens(TOKENS),
            )  # fmt: skip
            web_runner = web.AppRunner(console, access_log=None)
            await web_runner.setup()
            await web.TCPSite(web_runner, "127.0.0.1", self.port).start()
            try:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(runner.run(stop_apps))
                    await runner.started.wait()
                    tg.create_task(coordinator.run(stop_coordinator))
                    self._ready.set()
                    await self._stop.wait()
                    stop_coordinator.set()
                    stop_apps.set()
            finally:
                await web_runner.cleanup()

    # -- what the tests do to it -------------------------------------------------------------
    def place(self, order_id: str, *, needs_approval: bool = False) -> str:
        publisher = Publisher(self.transport, source="bus://shop")
        self.call(publisher.publish(OrderPlaced(order_id=order_id, needs_approval=needs_approval)))
        return ORDER.saga_id_for(OrderPlaced(order_id=order_id))

    def order_gift(self, order_id: str) -> str:
        publisher = Publisher(self.transport, source="bus://shop")
        self.call(publisher.publish(GiftOrdered(order_id=order_id)))
        return GIFT.saga_id_for(GiftOrdered(order_id=order_id))

    def task(self, task_id: str) -> TaskRow | None:
        return self.call(self.store.get_task(task_id))

    def data(self, saga_id: str) -> dict[str, Any]:
        stored = self.call(self.store.load(saga_id))
        assert stored is not None
        return dict(stored.state.data)

    def status(self, saga_id: str) -> str | None:
        stored = self.call(self.store.load(saga_id))
        return None if stored is None else stored.state.status.value

    def poison(self, order_id: str) -> None:
        """A record the coordinator cannot read: it lands in console.orders.dlq."""
        record = OutgoingRecord(
            topic="console.orders", key=order_id.encode(), value=b'{"order_id": 42',
            headers=(("ce_specversion", b"1.0"), ("ce_id", f"poison-{order_id}".encode()),
                     ("ce_source", b"bus://shop"), ("ce_type", b"console.order.placed.v1"),
                     ("content-type", b"application/json")),
        )  # fmt: skip
        self.call(self.transport.publish(record))
