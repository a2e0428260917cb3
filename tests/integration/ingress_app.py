"""An app for ``bus ingress`` subprocess tests: hires on a per-run topic (``INGRESS_RUN``).

On the default registry, so ``bus publish -m tests.integration.ingress_app`` knows it too.
"""

from __future__ import annotations

import os

from bus import App, Event

RUN = os.environ.get("INGRESS_RUN", "default")
TOPIC = f"it.ingress.cli.{RUN}"


class Joined(Event, type="it.ingress.joined.v1", topic=TOPIC, key="employee_id"):
    employee_id: str
    name: str


app = App(f"ingress-{RUN}")
