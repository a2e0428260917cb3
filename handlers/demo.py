"""The choreography demo: a hire flows HR -> identity -> licensing -> notifications.

Run it (the README's main command)::

    bus run handlers.demo:apps --publish handlers/demo_hires.ndjson --exit-when-idle
"""

from __future__ import annotations

from handlers.identity.handler import app as identity
from handlers.licensing.handler import app as licensing
from handlers.notifications.handler import app as notifications

apps = [identity, licensing, notifications]
