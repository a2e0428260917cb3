"""``bus run tests.crash.real_handlers:identity`` (or licensing, notifications, payroll,
repositories): a real handler app of onboarding v1 with its effects ledger
(tests/crash/real_systems.py) in the folder ``SAGA_CRASH_EFFECTS``; ``SAGA_CRASH_SLOW_S``
makes every 10th hire's commands that slow."""

from __future__ import annotations

import os
from pathlib import Path

from tests.crash.real_systems import ledgered_app

_EFFECTS = Path(os.environ.get("SAGA_CRASH_EFFECTS", "saga-crash-effects"))
_EFFECTS.mkdir(exist_ok=True)
_SLOW_S = float(os.environ.get("SAGA_CRASH_SLOW_S", "0"))

identity = ledgered_app("identity", _EFFECTS, slow_s=_SLOW_S)
licensing = ledgered_app("licensing", _EFFECTS, slow_s=_SLOW_S)
notifications = ledgered_app("notifications", _EFFECTS, slow_s=_SLOW_S)
payroll = ledgered_app("payroll", _EFFECTS, slow_s=_SLOW_S)
repositories = ledgered_app("repositories", _EFFECTS, slow_s=_SLOW_S)
