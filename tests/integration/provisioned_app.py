"""An app that declares its topics, for ``bus topics ensure`` tests (names from PROV_RUN)."""

from __future__ import annotations

import os

from bus import App, Event, TopicSpec

RUN = os.environ.get("PROV_RUN", "default")


class Order(Event, type="it.prov.order.v1", topic=f"it.prov.orders.{RUN}", key="order_id"):
    order_id: str


class Invoice(Event, type="it.prov.invoice.v1", topic=f"it.prov.invoices.{RUN}", key="order_id"):
    order_id: str


app = App(
    f"prov-{RUN}",
    topics=(TopicSpec(f"it.prov.orders.{RUN}", partitions=4, config={"retention.ms": "86400000"}),),
)


@app.handler
async def invoice(order: Order) -> Invoice:
    return Invoice(order_id=order.order_id)
