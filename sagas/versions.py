"""Definitions by name and version, so in-flight instances keep the version they started on.

Deploy a changed definition under a new version and keep the old one registered until its
instances finish. An instance whose version is gone is parked in ``needs_attention`` with
that reason (never run on a definition it did not start with); registering the version
again and retrying resumes it.

Example::

    catalog = Catalog([onboarding_v1, onboarding_v2])
    t = start(catalog.latest("onboarding"), hired, message_id=..., now=now)
    t = decide_versioned(catalog, t.state, trigger, now)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime

from bus import ConfigError
from sagas.core import decide
from sagas.definition import SagaDefinition
from sagas.effects import Transition
from sagas.state import HistoryEntry, SagaState, SagaStatus
from sagas.triggers import Trigger

__all__ = ["Catalog", "decide_versioned"]


class Catalog:
    """Registered saga definitions, by (name, version)."""

    def __init__(self, definitions: Iterable[SagaDefinition] = ()) -> None:
        self._by_key: dict[tuple[str, int], SagaDefinition] = {}
        for d in definitions:
            self.register(d)

    def register(self, definition: SagaDefinition) -> SagaDefinition:
        """Add ``definition``; the same (name, version) twice must be the same object."""
        key = (definition.name, definition.version)
        known = self._by_key.get(key)
        if known is not None and known is not definition:
            raise ConfigError(
                f"saga {definition.name!r} v{definition.version} is registered twice with "
                "different definitions; bump the version of the changed one"
            )
        self._by_key[key] = definition
        return definition

    def get(self, name: str, version: int) -> SagaDefinition | None:
        """The definition an instance started on, or None when it is not registered."""
        return self._by_key.get((name, version))

    def latest(self, name: str) -> SagaDefinition:
        """The highest registered version of ``name`` (new instances start on it)."""
        versions = [d for (n, _), d in self._by_key.items() if n == name]
        if not versions:
            raise ConfigError(f"no saga named {name!r} is registered (known: {self.names()})")
        return max(versions, key=lambda d: d.version)

    def names(self) -> list[str]:
        """Registered saga names, sorted."""
        return sorted({n for n, _ in self._by_key})

    def triggered_by(self, type_name: str) -> list[SagaDefinition]:
        """The latest version of every saga whose trigger has CloudEvents type ``type_name``."""
        return [
            self.latest(n) for n in self.names() if self.latest(n).trigger.bus_type == type_name
        ]

    def __iter__(self) -> Iterator[SagaDefinition]:
        return iter(sorted(self._by_key.values(), key=lambda d: (d.name, d.version)))


def decide_versioned(
    catalog: Catalog, state: SagaState, trigger: Trigger, now: datetime
) -> Transition:
    """:func:`sagas.core.decide` on the version ``state`` started with.

    A missing version parks a live instance in ``needs_attention`` (once; further
    triggers change nothing until the version is registered again and a Retry comes).
    """
    definition = catalog.get(state.name, state.version)
    if definition is not None:
        return decide(definition, state, trigger, now)
    if state.terminal or state.status == SagaStatus.NEEDS_ATTENTION:
        return Transition(state=state, changed=False)
    known = sorted(d.version for d in catalog if d.name == state.name)
    reason = (
        f"definition {state.name!r} v{state.version} is not registered "
        f"(registered versions: {known or 'none'}); register it again, then retry the saga"
    )
    parked = state.private_copy()
    parked.resume_status = parked.status
    parked.status = SagaStatus.NEEDS_ATTENTION
    parked.attention = reason
    parked.updated_at = now
    parked.history.append(HistoryEntry(at=now, event="needs_attention", detail=reason))
    return Transition(state=parked)
