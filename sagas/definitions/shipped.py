"""The saga definitions shipped with bus: what ``bus sagas run`` loads by default.

Both versions of the onboarding are registered (instances started on version 1 finish on
it; new hires start on version 2), the offboarding, and the equipment child sagas they
start (a child must be in its parent's catalog). A module of its own, not the
package's ``__init__``: names bound there would hide the modules of the same name
(``sagas.definitions.onboarding``).
"""

from sagas.definitions.equipment import equipment_issue, equipment_recovery
from sagas.definitions.offboarding import offboarding
from sagas.definitions.onboarding import onboarding
from sagas.definitions.onboarding_v2 import onboarding_v2

__all__ = ["equipment_issue", "equipment_recovery", "offboarding", "onboarding", "onboarding_v2"]
