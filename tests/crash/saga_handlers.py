"""``bus run tests.crash.saga_handlers``: the simulated systems of the saga crash tests
(tests/crash/systems.py) as a process, their effects and dedup records in the SQLite file
``SAGA_CRASH_EFFECTS``."""

from __future__ import annotations

import os

from tests.crash.systems import systems_app

app = systems_app(os.environ.get("SAGA_CRASH_EFFECTS", "saga-crash-effects.db"))
