"""Shared parts of ``bench/pipeline.py``: the workload, the models and the client settings.

Imported by the benchmark (``pipeline.py``) and by its probe process (``pipeline_probe.py``),
so the three pipelines and the probe agree on one definition of everything they share.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict

from bus import Event, Registry
from bus.config import KafkaConfig

PARTITIONS = 6
IN_TYPE = "bench.order.placed.v1"
OUT_TYPE = "bench.order.priced.v1"
# Tansu holds a group join for about 2 s with these.
SESSION_TIMEOUT_MS = 3000
HEARTBEAT_INTERVAL_MS = 1000
REQUEST_TIMEOUT_MS = 15_000  # must stay above the join hold
MAX_PARTITION_FETCH_BYTES = 1_048_576  # what bus's KafkaConsumer uses (max(max_request, 1 MiB))
MAX_REQUEST_BYTES = 1_048_576


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """Consumer and producer settings given identically to all three pipelines (and the probe)."""

    bootstrap_servers: str
    #: Longest wait of a fetch on the broker. Tansu does not wake a waiting fetch when data
    #: arrives, so this bounds the per-hop delay.
    fetch_max_wait_ms: int = 10
    #: Records per poll (getmany max_records / WorkerSettings.fetch_max_records / max_poll_records).
    max_records: int = 500
    #: Client-side wait of one poll when nothing is buffered (getmany timeout / fetch_timeout_s).
    poll_timeout_ms: int = 100
    linger_ms: int = 5  # bus's KafkaConfig default
    max_batch_bytes: int = 262_144  # bus's KafkaConfig default
    acks: str = "all"  # bus's KafkaConfig default

    def consumer_kwargs(self) -> dict[str, Any]:
        """aiokafka consumer keyword arguments (without group, offsets and commit mode)."""
        return {
            "bootstrap_servers": self.bootstrap_servers,
            "request_timeout_ms": REQUEST_TIMEOUT_MS,
            "fetch_max_wait_ms": self.fetch_max_wait_ms,
            "max_partition_fetch_bytes": MAX_PARTITION_FETCH_BYTES,
            "session_timeout_ms": SESSION_TIMEOUT_MS,
            "heartbeat_interval_ms": HEARTBEAT_INTERVAL_MS,
        }

    def producer_kwargs(self) -> dict[str, Any]:
        """aiokafka producer keyword arguments."""
        return {
            "bootstrap_servers": self.bootstrap_servers,
            "request_timeout_ms": REQUEST_TIMEOUT_MS,
            "acks": self.acks,
            "linger_ms": self.linger_ms,
            "max_batch_size": self.max_batch_bytes,
            "max_request_size": MAX_REQUEST_BYTES,
            "enable_idempotence": False,
        }

    def kafka_config(self, client_id: str = "bench") -> KafkaConfig:
        """The same settings as bus's KafkaConfig."""
        return KafkaConfig(
            bootstrap_servers=self.bootstrap_servers,
            client_id=client_id,
            acks="all" if self.acks == "all" else "1",
            linger_ms=self.linger_ms,
            max_batch_bytes=self.max_batch_bytes,
            max_request_bytes=MAX_REQUEST_BYTES,
            request_timeout_ms=REQUEST_TIMEOUT_MS,
            fetch_max_wait_ms=self.fetch_max_wait_ms,
            connect_timeout_s=10.0,
            session_timeout_ms=SESSION_TIMEOUT_MS,
            heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
        ).validated()


# -- the workload: ~1 KB nested JSON orders -------------------------------------------------
_FROZEN = ConfigDict(frozen=True, extra="forbid")  # the config every bus Message has


class Address(BaseModel):
    model_config = _FROZEN

    street: str
    city: str
    postcode: str
    country: str


class LineItem(BaseModel):
    model_config = _FROZEN

    sku: str
    description: str
    quantity: int
    unit_price_cents: int
    tags: list[str]


class OrderPlaced(BaseModel):
    """The input event (raw and FastStream validate into this class)."""

    model_config = _FROZEN

    order_id: str
    customer_id: str
    seq: int
    #: time.time_ns() when the probe sent it (latency runs), 0 in throughput runs.
    sent_ns: int
    currency: str
    channel: str
    shipping: Address
    items: list[LineItem]


class OrderPriced(BaseModel):
    """The output event: the order with its total."""

    model_config = _FROZEN

    order_id: str
    customer_id: str
    seq: int
    sent_ns: int
    currency: str
    channel: str
    shipping: Address
    items: list[LineItem]
    item_count: int
    total_cents: int


OutT = TypeVar("OutT", bound=BaseModel)


def price(order: OrderPlaced, out: Callable[..., OutT]) -> OutT:
    """The pipeline's one step, identical in all three (``out`` is the output class)."""
    items = order.items
    return out(
        order_id=order.order_id,
        customer_id=order.customer_id,
        seq=order.seq,
        sent_ns=order.sent_ns,
        currency=order.currency,
        channel=order.channel,
        shipping=order.shipping,
        items=items,
        item_count=len(items),
        total_cents=sum(i.quantity * i.unit_price_cents for i in items),
    )


_ADDRESSES = [
    Address(street=f"{n} Long Benchmark Street", city=c, postcode=f"{10000 + n}", country="DE")
    for n, c in enumerate(["Berlin", "Hamburg", "Munich", "Cologne", "Leipzig", "Dresden"])
]
_ITEMS = [
    LineItem(
        sku=f"SKU-{j:05d}",
        description=f"benchmark line item number {j} with a longish description",
        quantity=1 + j % 5,
        unit_price_cents=199 + 37 * j,
        tags=["bench", f"shelf-{j % 7}"],
    )
    for j in range(64)
]


def order_fields(seq: int, sent_ns: int = 0) -> dict[str, Any]:
    """Field values of order ``seq`` (1,000 distinct keys, so every partition gets records)."""
    first = seq % 58
    return {
        "order_id": f"order-{seq % 1000:04d}",
        "customer_id": f"customer-{seq % 977:04d}",
        "seq": seq,
        "sent_ns": sent_ns,
        "currency": "EUR",
        "channel": "web",
        "shipping": _ADDRESSES[seq % len(_ADDRESSES)],
        "items": _ITEMS[first : first + 6],
    }


# -- bus message classes: one pair per measurement (the topic is a class attribute) ---------
@dataclass(frozen=True, slots=True)
class BusModels:
    placed: type[Event]
    priced: type[Event]
    registry: Registry


def bus_models(in_topic: str, out_topic: str) -> BusModels:
    """Bus Event classes with OrderPlaced/OrderPriced's fields on ``in_topic``/``out_topic``."""
    registry = Registry()

    def make(name: str, base: type[BaseModel], type_name: str, topic: str) -> type[Event]:
        kwds = {"type": type_name, "topic": topic, "key": "order_id", "registry": registry}

        def body(ns: dict[str, Any]) -> None:
            ns["__module__"] = __name__
            ns["__qualname__"] = f"{name}[{topic}]"

        return types.new_class(name, (Event, base), kwds, body)

    return BusModels(
        placed=make("BusOrderPlaced", OrderPlaced, IN_TYPE, in_topic),
        priced=make("BusOrderPriced", OrderPriced, OUT_TYPE, out_topic),
        registry=registry,
    )
