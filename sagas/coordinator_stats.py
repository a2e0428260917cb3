"""The coordinator's counters (:meth:`sagas.coordinator.Coordinator.statistics`).

Example::

    coordinator.statistics().transitions
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CoordinatorStats"]


@dataclass
class CoordinatorStats:
    """Counters since the coordinator was made (``statistics()``). Records dead-lettered
    (undecodable, invalid, a definition that raised) are the Worker's (``WorkerStats``)."""

    records: int = 0
    started: int = 0
    transitions: int = 0
    unchanged: int = 0
    conflicts: int = 0
    timers_fired: int = 0
    requests: int = 0
    #: Tries of a batch again after the store failed (it is retried until it works).
    store_retries: int = 0
    #: Triggers (other messages than the one that started it) naming a saga id in use:
    #: logged and ignored, since a saga id starts one instance only.
    refused_starts: int = 0
    #: Inputs (records, fired timers) set aside for quarantined sagas; applied after a retry.
    set_aside: int = 0
    set_aside_applied: int = 0
    #: Rounds of due timers that waited for inputs on the topics to be applied first.
    fence_waits: int = 0
    #: Inputs for sagas not started yet, kept for them (sagas/early.py).
    kept_early: int = 0
