"""An app for ``bus ingress`` subprocess tests: hires on a per-run topic (``INGRESS_RUN``)."""

from __future__ import annotations

import os

from bus import App, Event, Registry

RUN = os.environ.get("INGRESS_RUN", "default")
TOPIC = f"it.ingress.cli.{RUN}"
registry = Registry()


class Joined(Event, type="it.ingress.joined.v1", topic=TOPIC, key="employee_id", registry=registry):
    employee_id: str
    name: str


app = App(f"ingress-{RUN}", registry=registry)
